"""
How a game's ticks keep time: how late each ran after its due time and how long it
took, for the log lines of matches and arenas and for the metrics
(C{gameproto_tick_lateness_seconds}, C{gameproto_tick_duration_seconds}).
"""

from __future__ import annotations

from collections import deque
from typing import Any


class TickTimes:
    """
    The last C{keep} ticks' lateness, and every tick in C{metrics}' histograms under
    the label C{game} (when a server's metrics are given).
    """

    def __init__(self, game: str, metrics: Any = None, keep: int = 100_000) -> None:
        self._samples: deque[float] = deque(maxlen=keep)
        self.count = 0
        self._late = self._took = None
        if metrics is not None:
            self._late = metrics.tick_lateness.labels(game)
            self._took = metrics.tick_duration.labels(game)

    def late(self, seconds: float) -> None:
        """A tick ran C{seconds} after its due time (early counts as on time)."""
        seconds = max(0.0, seconds)
        self._samples.append(seconds)
        self.count += 1
        if self._late is not None:
            self._late.observe(seconds)

    def took(self, seconds: float) -> None:
        """A tick's work took C{seconds}."""
        if self._took is not None:
            self._took.observe(seconds)

    def percentile(self, fraction: float) -> float | None:
        """The C{fraction} quantile of the lateness kept, in seconds; C{None} before any tick."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
