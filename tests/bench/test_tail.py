"""``python -m bench tail`` groups the slow replies into episodes and says what the tracker's
CPU ran while they waited, from perf's context switches. Pure functions, fixed inputs."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.tail import Switch, episodes, parse_switches, report  # noqa: E402

MS = 1_000_000

PERF_LINES = """\
         python  4242 [001]  100.000000: sched:sched_switch: prev_comm=python prev_pid=4242 \
prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120
        swapper     0 [001]  100.004000: sched:sched_switch: prev_comm=swapper/1 prev_pid=0 \
prev_prio=120 prev_state=R ==> next_comm=python next_pid=4242 next_prio=120
         python  4242 [001]  100.006000: sched:sched_switch: prev_comm=python prev_pid=4242 \
prev_prio=120 prev_state=R ==> next_comm=tokio-rt-worker next_pid=76 next_prio=120
"""


def test_perf_lines_become_switches_on_the_realtime_clock() -> None:
    switches = parse_switches(PERF_LINES + "garbage line\n", offset_ns=5 * MS)
    assert switches == [
        Switch(100_000 * MS + 5 * MS, "swapper/1/0"),
        Switch(100_004 * MS + 5 * MS, "python/4242"),
        Switch(100_006 * MS + 5 * MS, "tokio-rt-worker/76"),
    ]


def test_overlapping_slow_replies_are_one_episode_with_what_ran_meanwhile() -> None:
    switches = parse_switches(PERF_LINES, offset_ns=0)
    t0 = 100_000 * MS
    # Two slow replies whose intervals overlap (sent at +1 and +2 ms, back at +5 and +7),
    # a fast one (ignored) and a slow one later on its own.
    arrivals = [t0 + 5 * MS, t0 + 7 * MS, t0 + 7 * MS, t0 + 20 * MS]
    latencies = [4 * MS, 5 * MS, MS // 10, 2 * MS]
    eps = episodes(arrivals, latencies, MS, switches)
    assert [(e.start_ns - t0, e.end_ns - t0, e.replies) for e in eps] == [
        (1 * MS, 7 * MS, 2), (18 * MS, 20 * MS, 1)]
    assert dict(eps[0].ran) == {"swapper/1/0": 3 * MS, "python/4242": 2 * MS,
                                "tokio-rt-worker/76": 1 * MS}
    assert dict(eps[1].ran) == {"tokio-rt-worker/76": 2 * MS}
    text = report(eps, {"4242"}, replies=4, threshold_ms=1)
    assert "3 slower than 1 ms, in 2 episodes" in text
    assert ("idle (swapper) 38%" in text and "other processes 38%" in text
            and "the tracker 25%" in text)
