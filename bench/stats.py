"""Counters and latency samples one load phase collects."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field


@dataclass(slots=True)
class LoadStats:
    """What one phase of a load generator saw.

    ``responses`` counts announce and scrape replies that passed every check; ``errors``
    counts replies that failed one (the first few reasons are kept in ``error_reasons``);
    ``timeouts`` counts requests that got no reply in time (lost datagrams, stalled
    connections). Latencies are in nanoseconds, one per checked response when recording.
    """

    responses: int = 0
    announces: int = 0
    scrapes: int = 0
    connects: int = 0
    errors: int = 0
    timeouts: int = 0
    late: int = 0
    retries: int = 0
    skipped: int = 0
    elapsed: float = 0.0
    busy_share: float | None = None
    error_reasons: dict[str, int] = field(default_factory=dict)
    latencies_ns: array[int] = field(default_factory=lambda: array("q"))

    def error(self, reason: str) -> None:
        """Count one bad reply and remember why (a few distinct reasons at most)."""
        self.errors += 1
        if reason in self.error_reasons or len(self.error_reasons) < 20:
            self.error_reasons[reason] = self.error_reasons.get(reason, 0) + 1

    def percentile_ms(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the recorded latencies, in milliseconds."""
        if not self.latencies_ns:
            return None
        ordered = sorted(self.latencies_ns)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index] / 1e6

    def connect_share(self) -> float | None:
        """UDP: connects among the replies that passed their checks (connects, announces
        and scrapes); None when there were none."""
        total = self.connects + self.responses
        return round(self.connects / total, 4) if total else None

    def rate(self) -> float:
        """Checked responses per second of wall time."""
        return self.responses / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> dict[str, object]:
        """A JSON-friendly digest (no raw samples)."""
        return {
            "responses": self.responses,
            "announces": self.announces,
            "scrapes": self.scrapes,
            "connects": self.connects,
            "connect_share": self.connect_share(),
            "errors": self.errors,
            "timeouts": self.timeouts,
            "late": self.late,
            "retries": self.retries,
            "skipped": self.skipped,
            "elapsed_s": round(self.elapsed, 3),
            "generator_busy_share": self.busy_share,
            "responses_per_s": round(self.rate(), 1),
            "p50_ms": self.percentile_ms(0.5),
            "p99_ms": self.percentile_ms(0.99),
            "error_reasons": dict(self.error_reasons),
        }
