"""Bookkeeping behind the planner's /diagnostics status: rates, percentiles, recent issues."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


class RateMeter:
    """Messages per second over the last ``window_s`` seconds (monotonic clock)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self) -> None:
        self._times.append(time.monotonic())

    def rate(self) -> float:
        now = time.monotonic()
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        return len(self._times) / self.window_s


class Percentiles:
    """Last ``size`` values; p50/p90/p99 on demand."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def summary(self) -> str:
        if not self._values:
            return "n/a"
        p50, p90, p99 = np.percentile(list(self._values), [50, 90, 99])
        return f"p50 {p50:.1f} / p90 {p90:.1f} / p99 {p99:.1f}"


class IssueBoard:
    """Problems seen recently, keyed so a repeated one is shown once; they expire after
    ``hold_s`` seconds unless reported again (so a status clears once the cause is gone).

    Safe across threads: the planner's callbacks, its inference loop and its diagnostics timer
    report and read it concurrently.
    """

    def __init__(self, hold_s: float = 5.0) -> None:
        self.hold_s = hold_s
        self._issues: dict[str, tuple[int, str, float]] = {}
        self._lock = threading.Lock()

    def report(
        self, key: str, message: str, level: int = 1, on_new: Callable[[str], object] | None = None
    ) -> bool:
        """Record an issue; True when it is new. ``on_new(message)`` runs for a new one before any
        reader can see it, so a status never shows a problem whose log line is not written yet."""
        with self._lock:
            new = key not in self._issues
            if new and on_new is not None:
                on_new(message)
            self._issues[key] = (level, message, time.monotonic())
        return new

    def active(self) -> list[tuple[int, str]]:
        now = time.monotonic()
        with self._lock:
            self._issues = {k: v for k, v in self._issues.items() if now - v[2] <= self.hold_s}
            current = list(self._issues.values())
        return sorted((level, message) for level, message, _ in current)


def status_message(
    name: str, hardware_id: str, issues: list[tuple[int, str]], values: dict[str, object]
) -> DiagnosticStatus:
    level = max((lvl for lvl, _ in issues), default=0)
    return DiagnosticStatus(
        level=bytes([level]),
        name=name,
        message="; ".join(message for _, message in issues) or "ok",
        hardware_id=hardware_id,
        values=[KeyValue(key=key, value=str(value)) for key, value in values.items()],
    )
