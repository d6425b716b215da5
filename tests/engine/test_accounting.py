"""Private mode's rules: who is admitted, and what each announce adds to an account.

Driven with an explicit ``now`` and hand-made store outcomes, so each rule is pinned alone.
"""

from __future__ import annotations

import pytest
from support.peers import OTHER_TORRENT, TORRENT, request

from shoal.engine.accounting import (
    NO_LEECHING,
    PASSKEY_REQUIRED,
    UNKNOWN_PASSKEY,
    UNREGISTERED,
    USER_DISABLED,
    AccountingRules,
    PrivateTracker,
    Tally,
    Torrent,
    User,
    delta,
    peer_limit_reason,
)
from shoal.errors import ClientError
from shoal.types import (
    ROLE_LEECHER,
    ROLE_NONE,
    ROLE_SEEDER,
    AnnounceRequest,
    AnnounceResult,
    Event,
)

T0 = 1_700_000_000
PK = "A" * 32
ALICE = User(1, PK)
V2 = bytes(range(20))


def tracker(rules: AccountingRules | None = None, **user: object) -> PrivateTracker:
    private = PrivateTracker(rules)
    private.put_user(User(1, PK, **user))  # type: ignore[arg-type]
    private.put_torrent(Torrent(TORRENT))
    return private


def announce(n: int = 1, *, passkey: str = PK, uploaded: int = 0, downloaded: int = 0,
             left: int = 100, event: Event = Event.NONE, torrent: bytes = TORRENT,
             variant: int = 0) -> AnnounceRequest:
    req = request(n, torrent=torrent, left=left, event=event, variant=variant)
    req.uploaded, req.downloaded = uploaded, downloaded
    req.path = f"/{passkey}/announce".encode()
    return req


def outcome(before: int = ROLE_LEECHER, after: int = ROLE_LEECHER, prev_up: int = 0,
            prev_down: int = 0, completed: bool = False) -> AnnounceResult:
    return AnnounceResult(0, 0, 0, role_before=before, role_after=after, completed=completed,
                          prev_uploaded=prev_up, prev_downloaded=prev_down)


def step(private: PrivateTracker, req: AnnounceRequest, result: AnnounceResult,
         now: int) -> None:
    private.settle(private.admit(req, now), req, result, now)


def tally(private: PrivateTracker) -> Tally:
    return private.pending[1, TORRENT]


# -- admission -----------------------------------------------------------------------


def refusal(private: PrivateTracker, req: AnnounceRequest) -> ClientError:
    with pytest.raises(ClientError) as caught:
        private.admit(req, T0)
    return caught.value


def test_an_announce_with_a_known_passkey_is_admitted() -> None:
    user, torrent = tracker().admit(announce(), T0)
    assert (user.id, torrent.info_hash) == (1, TORRENT)


def test_the_passkey_may_come_in_the_query() -> None:
    req = announce()
    req.path = f"/announce?passkey={PK}".encode()
    assert tracker().admit(req, T0)[0].id == 1


@pytest.mark.parametrize(("path", "reason"), [
    (b"/announce", PASSKEY_REQUIRED),
    (b"/" + b"B" * 32 + b"/announce", UNKNOWN_PASSKEY),
    (b"/" + PK[:-1].encode() + b"/announce", UNKNOWN_PASSKEY),
])
def test_a_missing_or_unknown_passkey_is_refused_for_long(path: bytes, reason: str) -> None:
    req = announce()
    req.path = path
    error = refusal(tracker(), req)
    assert (error.reason, error.retry_in) == (reason, 60)


def test_a_disabled_user_is_refused() -> None:
    assert refusal(tracker(enabled=False), announce()).reason == USER_DISABLED


def test_an_unregistered_torrent_is_refused() -> None:
    assert refusal(tracker(), announce(torrent=OTHER_TORRENT)).reason == UNREGISTERED


def test_a_user_who_may_not_leech_may_still_seed() -> None:
    private = tracker(can_leech=False)
    assert refusal(private, announce(left=5)).reason == NO_LEECHING
    assert private.admit(announce(left=0), T0)[0].id == 1


def test_a_rotated_passkey_stops_working_at_once() -> None:
    private = tracker()
    private.put_user(User(1, "N" * 32))
    assert refusal(private, announce()).reason == UNKNOWN_PASSKEY
    assert private.admit(announce(passkey="N" * 32), T0)[0].id == 1


def test_a_hybrid_torrents_second_hash_is_its_first_hashs_swarm() -> None:
    private = tracker()
    private.put_torrent(Torrent(TORRENT, V2))
    req = announce(torrent=V2)
    private.admit(req, T0)
    assert req.info_hash == TORRENT


def test_a_new_peer_past_the_users_limit_is_refused_but_known_ones_go_on() -> None:
    private = tracker(AccountingRules(peer_limit=2))
    for variant in (0, 1):
        step(private, announce(variant=variant), outcome(ROLE_NONE), T0)
    assert refusal(private, announce(variant=2)).reason == peer_limit_reason(2)
    private.admit(announce(variant=1), T0)  # already counted


def test_a_per_user_peer_limit_overrides_the_default() -> None:
    private = tracker(AccountingRules(peer_limit=5), peer_limit=1)
    step(private, announce(variant=0), outcome(ROLE_NONE), T0)
    assert refusal(private, announce(variant=1)).reason == peer_limit_reason(1)


def test_a_stopped_or_expired_peer_frees_its_place_under_the_limit() -> None:
    private = tracker(AccountingRules(peer_limit=1, peer_timeout=100))
    step(private, announce(variant=0), outcome(ROLE_NONE), T0)
    step(private, announce(variant=0, event=Event.STOPPED), outcome(after=ROLE_NONE), T0 + 1)
    step(private, announce(variant=1), outcome(ROLE_NONE), T0 + 2)
    assert refusal(private, announce(variant=2)).reason == peer_limit_reason(1)
    private.admit(announce(variant=2), T0 + 103)


# -- accounting ----------------------------------------------------------------------


def test_a_delta_is_the_increase_over_the_previous_report() -> None:
    assert delta(150, 100, fresh=False) == 50


def test_a_fresh_baseline_or_a_decrease_adds_nothing() -> None:
    assert delta(150, 100, fresh=True) == 0
    assert delta(40, 100, fresh=False) == 0


def test_uploaded_and_downloaded_are_credited_as_deltas() -> None:
    private = tracker()
    step(private, announce(event=Event.STARTED), outcome(ROLE_NONE), T0)
    step(private, announce(uploaded=1000, downloaded=3000), outcome(), T0 + 60)
    step(private, announce(uploaded=1500, downloaded=3000),
         outcome(prev_up=1000, prev_down=3000), T0 + 120)
    t = tally(private)
    assert (t.uploaded, t.downloaded, t.raw_uploaded, t.raw_downloaded) == (1500, 3000,
                                                                            1500, 3000)


def test_a_new_started_after_a_client_restart_starts_a_new_baseline() -> None:
    private = tracker()
    step(private, announce(uploaded=500, event=Event.STARTED), outcome(prev_up=9000), T0)
    step(private, announce(uploaded=800), outcome(prev_up=500), T0 + 60)
    assert tally(private).uploaded == 300


def test_a_decrease_is_never_subtracted_and_counting_goes_on_from_it() -> None:
    private = tracker()
    step(private, announce(uploaded=100), outcome(prev_up=5000), T0)
    step(private, announce(uploaded=400), outcome(prev_up=100), T0 + 60)
    assert tally(private).uploaded == 300


def test_a_peer_the_tracker_did_not_know_credits_nothing_on_its_first_announce() -> None:
    private = tracker()
    step(private, announce(uploaded=7000), outcome(ROLE_NONE), T0)
    assert tally(private).uploaded == 0


def test_user_and_torrent_factors_multiply_what_is_credited() -> None:
    private = tracker(upload_factor=1.5, download_factor=0.5)
    private.put_torrent(Torrent(TORRENT, upload_factor=2.0, download_factor=0.5))
    step(private, announce(uploaded=1000, downloaded=1000), outcome(), T0)
    t = tally(private)
    assert (t.uploaded, t.downloaded, t.raw_uploaded, t.raw_downloaded) == (3000, 250,
                                                                            1000, 1000)


def test_a_freeleech_torrent_credits_no_download() -> None:
    private = tracker()
    private.put_torrent(Torrent(TORRENT, download_factor=0.0))
    step(private, announce(uploaded=10, downloaded=1000), outcome(), T0)
    assert (tally(private).downloaded, tally(private).raw_downloaded) == (0, 1000)


def test_site_wide_freeleech_credits_no_download() -> None:
    private = tracker(AccountingRules(freeleech=True))
    step(private, announce(uploaded=10, downloaded=1000), outcome(), T0)
    assert (tally(private).uploaded, tally(private).downloaded) == (10, 0)


def test_seeding_time_sums_the_intervals_that_began_seeding() -> None:
    private = tracker()
    step(private, announce(left=0), outcome(ROLE_NONE, ROLE_SEEDER), T0)
    step(private, announce(left=0), outcome(ROLE_SEEDER, ROLE_SEEDER), T0 + 1800)
    step(private, announce(left=0, event=Event.STOPPED), outcome(ROLE_SEEDER, ROLE_NONE),
         T0 + 2000)
    assert tally(private).seeding_seconds == 2000


def test_leeching_time_is_not_seeding_time() -> None:
    private = tracker()
    step(private, announce(), outcome(ROLE_NONE), T0)
    step(private, announce(left=0, event=Event.COMPLETED),
         outcome(ROLE_LEECHER, ROLE_SEEDER, completed=True), T0 + 600)
    step(private, announce(left=0), outcome(ROLE_SEEDER, ROLE_SEEDER), T0 + 900)
    assert tally(private).seeding_seconds == 300


def test_one_snatch_per_completion_the_store_counted() -> None:
    private = tracker()
    step(private, announce(left=0, event=Event.COMPLETED),
         outcome(ROLE_LEECHER, ROLE_SEEDER, completed=True), T0)
    step(private, announce(left=0, event=Event.COMPLETED),
         outcome(ROLE_SEEDER, ROLE_SEEDER, completed=False), T0 + 60)
    assert tally(private).snatches == 1


def test_every_announce_is_counted_and_the_last_ones_time_kept() -> None:
    private = tracker()
    for k in range(3):
        step(private, announce(), outcome(), T0 + k * 60)
    t = tally(private)
    assert (t.announces, t.first_seen, t.last_seen) == (3, T0, T0 + 120)


def test_a_delta_faster_than_max_rate_is_flagged_not_credited() -> None:
    private = tracker(AccountingRules(max_rate=1000))
    step(private, announce(), outcome(ROLE_NONE), T0)
    step(private, announce(uploaded=100_000), outcome(), T0 + 10)
    assert tally(private).uploaded == 0
    (flag,) = private.flags
    assert (flag.user_id, flag.info_hash, flag.uploaded, flag.seconds) == (1, TORRENT,
                                                                          100_000, 10)


def test_a_delta_within_max_rate_is_credited_unflagged() -> None:
    private = tracker(AccountingRules(max_rate=1000))
    step(private, announce(), outcome(ROLE_NONE), T0)
    step(private, announce(uploaded=10_000), outcome(), T0 + 10)
    assert (tally(private).uploaded, private.flags) == (10_000, [])


def test_without_a_previous_time_the_rate_is_judged_over_a_peer_timeout() -> None:
    private = tracker(AccountingRules(max_rate=10, peer_timeout=100))
    step(private, announce(uploaded=999), outcome(), T0)  # known to the store, not to us
    step(private, announce(uploaded=3000, variant=1), outcome(), T0)
    assert tally(private).uploaded == 999
    assert [f.uploaded for f in private.flags] == [3000]


def test_take_hands_over_and_clears_and_give_back_merges() -> None:
    private = tracker()
    step(private, announce(uploaded=10), outcome(), T0)
    pending, flags = private.take()
    assert private.pending == {} and pending[1, TORRENT].uploaded == 10
    step(private, announce(uploaded=15), outcome(prev_up=10), T0 + 60)
    private.give_back(pending, flags)
    assert (tally(private).uploaded, tally(private).announces) == (15, 2)


def test_a_hybrid_torrents_accounting_lands_on_its_first_hash() -> None:
    private = tracker()
    private.put_torrent(Torrent(TORRENT, V2))
    step(private, announce(torrent=V2, uploaded=10), outcome(), T0)
    assert tally(private).uploaded == 10
    assert ALICE.id in {uid for uid, _ in private.pending}
