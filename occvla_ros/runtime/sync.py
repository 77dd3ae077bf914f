"""Approximate-time synchronisation of several stamped streams (no ROS imports).

Policy: every arriving message is a candidate reference; for each other required slot the queued
message closest in stamp is picked, and the set is emitted when all picked stamps lie within
``slop_ns`` of each other. Emitted messages and everything older are dropped from the queues, so
a set is never emitted twice and never older than the previous one.

Stamps going backwards in one slot by more than ``reset_ns`` (a bag loop, a restarted driver)
reset all queues; a message older than the last emitted set is discarded as late. So is, between
a reset and the first set after it, a straggler of the previous pass: a message stamped more than
``reset_ns`` beyond the newest one since the reset (topics are not ordered across each other, so
the previous pass's last images can arrive after the first looped ones; each would otherwise
reset the queues again and lose the looped set).

Every queued payload that leaves without being emitted (overflow, pruning, reset) is passed to
``on_discard``, so a caller whose payloads carry work in progress (the planner's decoding) can
cancel it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from occvla_ros.errors import ConfigError


@dataclass
class SyncedSet:
    stamp_ns: int  # the newest stamp of the set (outputs carry it)
    items: dict[str, Any]  # slot -> payload, only the required slots
    stamps_ns: dict[str, int]


@dataclass
class SyncCounters:
    emitted: int = 0
    late: int = 0  # older than the last emitted set
    overflow: int = 0  # pushed out of a full queue before being matched
    resets: int = 0  # stamps went backwards (bag loop)


@dataclass
class _Queue:
    entries: list[tuple[int, Any]] = field(default_factory=list)  # sorted by stamp


class ApproximateTimeSynchronizer:
    def __init__(
        self,
        slots: Sequence[str],
        slop_ns: int,
        queue_size: int = 10,
        reset_ns: int = 1_000_000_000,
        on_discard: Callable[[Any], None] | None = None,
    ) -> None:
        if len(set(slots)) != len(slots) or not slots:
            raise ConfigError(f"synchroniser slots must be distinct and non-empty, got {slots}")
        if slop_ns < 0 or queue_size < 1 or reset_ns <= 0:
            raise ConfigError(
                f"invalid synchroniser settings: slop_ns={slop_ns}, queue_size={queue_size}, "
                f"reset_ns={reset_ns}"
            )
        self.slots = tuple(slots)
        self.slop_ns = slop_ns
        self.queue_size = queue_size
        self.reset_ns = reset_ns
        self._on_discard = on_discard
        self.required = set(self.slots)
        self.counters = SyncCounters()
        self._queues = {slot: _Queue() for slot in self.slots}
        self._last_emitted_ns: int | None = None
        # Newest stamp queued since a reset, until the first set after it (None otherwise).
        self._looped_newest_ns: int | None = None

    def set_required(self, slots: Sequence[str]) -> None:
        """Match on these slots only (the others are stale and substituted by the caller)."""
        unknown = set(slots) - set(self.slots)
        if unknown or not slots:
            raise ConfigError(f"required slots {sorted(slots)} must be a non-empty subset")
        self.required = set(slots)

    def reset(self) -> None:
        for queue in self._queues.values():
            self._discard(queue.entries)
            queue.entries.clear()
        self._last_emitted_ns = None

    def _discard(self, entries: list[tuple[int, Any]]) -> None:
        if self._on_discard is not None:
            for _, item in entries:
                self._on_discard(item)

    def add(self, slot: str, stamp_ns: int, item: Any) -> tuple[SyncedSet | None, bool]:
        """Queue one message; returns (the completed set or None, whether a reset happened)."""
        queue = self._queues[slot].entries
        was_reset = False
        newest = queue[-1][0] if queue else self._last_emitted_ns
        if self._from_previous_pass(stamp_ns):
            self.counters.late += 1
            return None, False
        if newest is not None and stamp_ns < newest - self.reset_ns:
            self.reset()
            self.counters.resets += 1
            was_reset = True
        elif self._last_emitted_ns is not None and stamp_ns <= self._last_emitted_ns:
            self.counters.late += 1
            return None, False
        if was_reset:
            self._looped_newest_ns = stamp_ns
        elif self._looped_newest_ns is not None:
            self._looped_newest_ns = max(self._looped_newest_ns, stamp_ns)
        position = len(queue)
        while position > 0 and queue[position - 1][0] > stamp_ns:
            position -= 1
        queue.insert(position, (stamp_ns, item))
        if len(queue) > self.queue_size:
            self._discard([queue.pop(0)])
            self.counters.overflow += 1
        return self._match(slot, stamp_ns), was_reset

    def _from_previous_pass(self, stamp_ns: int) -> bool:
        newest = self._looped_newest_ns
        return newest is not None and stamp_ns > newest + self.reset_ns

    def _match(self, slot: str, stamp_ns: int) -> SyncedSet | None:
        if slot not in self.required:
            return None
        picked: dict[str, tuple[int, Any]] = {}
        for other in self.required:
            entries = self._queues[other].entries
            if not entries:
                return None
            picked[other] = min(entries, key=lambda entry: abs(entry[0] - stamp_ns))
        stamps = [stamp for stamp, _ in picked.values()]
        if max(stamps) - min(stamps) > self.slop_ns:
            return None
        newest = max(stamps)
        emitted = {id(item) for _, item in picked.values()}
        for queue in self._queues.values():
            self._discard([e for e in queue.entries if e[0] <= newest and id(e[1]) not in emitted])
            queue.entries = [entry for entry in queue.entries if entry[0] > newest]
        self._last_emitted_ns = newest
        self._looped_newest_ns = None
        self.counters.emitted += 1
        return SyncedSet(
            stamp_ns=newest,
            items={name: item for name, (_, item) in picked.items()},
            stamps_ns={name: stamp for name, (stamp, _) in picked.items()},
        )
