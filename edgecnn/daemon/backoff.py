"""Capped exponential backoff with jitter, shared by the source and MQTT reconnects.

The cap is a few seconds (not minutes): a camera or broker that comes back is
used again within one cap, and the jitter keeps a fleet of devices that lost
the same broker from reconnecting in lock-step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """`next()` gives the delay before the next attempt; `reset()` after a success.

    Delay n is min(cap, initial * 2**(n-1)), scaled by a random factor in
    [1 - jitter, 1], so it never exceeds `cap`.
    """

    initial: float = 0.25
    cap: float = 2.0
    jitter: float = 0.5
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self.initial = max(0.01, float(self.initial))
        self.cap = max(self.initial, float(self.cap))
        self.jitter = min(1.0, max(0.0, float(self.jitter)))

    def next(self) -> float:
        self.attempts += 1
        base = min(self.cap, self.initial * 2 ** min(self.attempts - 1, 30))
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.attempts = 0
