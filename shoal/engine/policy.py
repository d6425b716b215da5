"""Tracker policy that does not depend on any one swarm: numwant, intervals, expiry.

Applied by the logic layer, not by the stores."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Policy:
    """The announce policy the logic layer applies around every store.

    ``interval_jitter`` seconds at most are added at random to each ``interval`` so that
    clients that started together do not announce in lockstep. A peer that has not
    announced for ``peer_timeout`` seconds is expired; by default that is 1.5 intervals
    plus the jitter, the grace clients need for a late announce.
    """

    interval: int = 1800
    min_interval: int = 300
    interval_jitter: int = 180
    default_numwant: int = 50
    max_numwant: int = 200
    peer_timeout: int = 0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.min_interval < 0 or self.interval_jitter < 0:
            raise ValueError("interval must be positive, min_interval and jitter non-negative")
        if self.default_numwant < 0 or self.max_numwant < 0:
            raise ValueError("numwant limits must be non-negative")
        if self.peer_timeout <= 0:
            object.__setattr__(
                self, "peer_timeout", self.interval * 3 // 2 + self.interval_jitter
            )

    def numwant(self, asked: int) -> int:
        """How many peers to hand out: the default when the client did not say (negative),
        none when it asked for zero (BEP 3: numwant "is permitted to be zero"), capped."""
        if asked < 0:
            asked = self.default_numwant
        return min(asked, self.max_numwant)

    def next_interval(self) -> int:
        """The interval for one reply, with jitter."""
        if self.interval_jitter:
            # random() rather than randint(): a fifth of the cost, on every announce.
            return self.interval + int(self.rng.random() * (self.interval_jitter + 1))
        return self.interval
