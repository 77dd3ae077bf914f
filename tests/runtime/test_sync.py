"""Approximate-time synchroniser on hand-built stamp sequences."""

from __future__ import annotations

import pytest

from occvla_ros.errors import ConfigError
from occvla_ros.runtime.sync import ApproximateTimeSynchronizer

MS = 1_000_000
SLOTS = ("A", "B", "C")


def make_sync(**overrides) -> ApproximateTimeSynchronizer:
    settings = {"slop_ns": 50 * MS, "queue_size": 5, "reset_ns": 1000 * MS} | overrides
    return ApproximateTimeSynchronizer(SLOTS, **settings)


def feed(sync, events):
    """events: (slot, stamp_ms) -> list of emitted sets."""
    emitted = []
    for slot, stamp_ms in events:
        synced, _ = sync.add(slot, stamp_ms * MS, f"{slot}@{stamp_ms}")
        if synced is not None:
            emitted.append(synced)
    return emitted


def test_exact_match_emits_one_set_with_every_slot():
    sync = make_sync()
    [synced] = feed(sync, [("A", 100), ("B", 100), ("C", 100)])
    assert synced.items == {"A": "A@100", "B": "B@100", "C": "C@100"}
    assert synced.stamp_ns == 100 * MS


def test_within_slop_matches_and_stamp_is_the_newest():
    sync = make_sync()
    [synced] = feed(sync, [("A", 100), ("B", 140), ("C", 120)])
    assert synced.stamp_ns == 140 * MS
    assert synced.stamps_ns == {"A": 100 * MS, "B": 140 * MS, "C": 120 * MS}


def test_beyond_slop_does_not_match_until_a_close_message_arrives():
    sync = make_sync()
    assert feed(sync, [("A", 100), ("B", 100), ("C", 200)]) == []
    [synced] = feed(sync, [("A", 190), ("B", 210)])
    assert synced.items == {"A": "A@190", "B": "B@210", "C": "C@200"}


def test_out_of_order_arrival_across_and_within_slots():
    sync = make_sync()
    # C's frame of t=100 arrives last; B's two frames arrive newest-first.
    sets = feed(sync, [("A", 100), ("B", 183), ("B", 100), ("C", 100)])
    assert [s.items for s in sets] == [{"A": "A@100", "B": "B@100", "C": "C@100"}]
    # B@183 is still queued; nothing older than the emitted set is kept or emitted.
    [second] = feed(sync, [("A", 180), ("C", 185)])
    assert second.items == {"A": "A@180", "B": "B@183", "C": "C@185"}
    assert feed(sync, [("A", 150)]) == []
    assert sync.counters.late == 1


def test_stale_camera_blocks_until_slots_are_relaxed():
    sync = make_sync()
    assert feed(sync, [("A", 100), ("B", 100), ("A", 180), ("B", 180)]) == []
    sync.set_required(["A", "B"])
    [synced] = feed(sync, [("A", 260), ("B", 262)])
    assert set(synced.items) == {"A", "B"}
    with pytest.raises(ConfigError):
        sync.set_required(["A", "Z"])


def test_stamps_going_backwards_reset_the_queues():
    sync = make_sync()
    feed(sync, [("A", 5000), ("B", 5000), ("C", 5000), ("A", 5080)])
    synced, was_reset = sync.add("B", 10 * MS, "B@10")  # bag looped to its start
    assert synced is None and was_reset
    assert sync.counters.resets == 1
    [after] = feed(sync, [("A", 12), ("C", 11)])
    assert after.items == {"A": "A@12", "B": "B@10", "C": "C@11"}


def test_queue_overflow_drops_the_oldest_and_counts_it():
    sync = make_sync(queue_size=2)
    feed(sync, [("A", 100), ("A", 200), ("A", 300)])
    assert sync.counters.overflow == 1
    assert feed(sync, [("B", 100), ("C", 100)]) == []  # A@100 is gone


def test_invalid_settings_are_rejected():
    with pytest.raises(ConfigError, match="slop_ns=-1"):
        make_sync(slop_ns=-1)
    with pytest.raises(ConfigError):
        ApproximateTimeSynchronizer(["A", "A"], slop_ns=1)


def test_every_payload_leaving_unemitted_goes_to_on_discard():
    discarded: list[str] = []
    sync = make_sync(queue_size=2, on_discard=discarded.append)
    feed(sync, [("A", 100), ("A", 200), ("A", 300)])  # A@100 overflows
    assert discarded == ["A@100"]
    [synced] = feed(sync, [("B", 300), ("B", 310), ("C", 308)])  # A@200 and B@300 are pruned
    assert synced.items == {"A": "A@300", "B": "B@310", "C": "C@308"}
    assert sorted(discarded) == ["A@100", "A@200", "B@300"]
    feed(sync, [("A", 3000), ("B", 3000)])
    assert sync.add("A", 10 * MS, "A@10") == (None, True)  # stamps went backwards: a reset
    assert sorted(discarded) == ["A@100", "A@200", "A@3000", "B@300", "B@3000"]
    assert not {"A@300", "B@310", "C@308"} & set(discarded)  # emitted payloads are not


def test_a_straggler_of_the_previous_pass_does_not_reset_the_looped_set_again():
    sync = make_sync()
    feed(sync, [("A", 6000), ("B", 6000), ("C", 6000), ("A", 6500)])  # A's next set in flight
    assert sync.add("A", 5 * MS, "A@5") == (None, True)  # the bag looped: a reset
    # B and C of the 6500 ms set arrive after it: topics are not ordered across each other.
    # So may a set the queues never saw before the loop (7000 ms).
    assert feed(sync, [("B", 6500), ("C", 6500), ("B", 7000)]) == []
    assert sync.counters.late == 3 and sync.counters.resets == 1
    [looped] = feed(sync, [("B", 5), ("C", 5)])
    assert looped.items == {"A": "A@5", "B": "B@5", "C": "C@5"}

    # After the first looped set, time runs on as usual, gaps included.
    [later] = feed(sync, [("A", 2005), ("B", 2005), ("C", 2005)])
    assert later.stamp_ns == 2005 * MS and sync.counters.late == 3
