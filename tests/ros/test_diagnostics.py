"""The planner's diagnostics bookkeeping: the issue board across threads, expiry, summaries."""

from __future__ import annotations

import sys
import threading
import time

from occvla_ros.ros.diagnostics import IssueBoard, Percentiles, RateMeter


def test_issue_board_takes_reports_from_several_threads_while_it_is_read():
    board = IssueBoard(hold_s=60.0)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reporter(prefix: str) -> None:
        for index in range(20_000):
            board.report(f"{prefix}:{index}", "problem")

    def reader() -> None:
        try:
            while not stop.is_set():
                board.active()
        except RuntimeError as error:  # "dictionary changed size during iteration"
            errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=reporter, args=(p,)) for p in ("a", "b")]
        reading = threading.Thread(target=reader)
        for thread in (*threads, reading):
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        reading.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert len(board.active()) == 40_000  # no report lost to a concurrent rebuild


def test_issues_expire_unless_reported_again():
    board = IssueBoard(hold_s=0.05)
    assert board.report("stale", "stale camera(s): CAM_BACK", level=1)
    assert not board.report("stale", "stale camera(s): CAM_BACK", level=1)  # logged once
    board.report("fatal", "startup failed", level=2)
    assert board.active() == [(1, "stale camera(s): CAM_BACK"), (2, "startup failed")]
    time.sleep(0.06)
    assert board.active() == []


def test_a_new_issue_is_logged_before_a_status_can_show_it():
    board, logged = IssueBoard(), []
    entered, release = threading.Event(), threading.Event()

    def log(message: str) -> None:
        logged.append(message)
        entered.set()
        release.wait(5.0)

    reporter = threading.Thread(
        target=board.report, args=("image", "bad image"), kwargs={"on_new": log}
    )
    reporter.start()
    assert entered.wait(5.0)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(board.active()))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive() and not seen  # the status waits for the log line
    release.set()
    reporter.join(5.0)
    reader.join(5.0)
    assert seen == [(1, "bad image")]
    assert not board.report("image", "bad image", on_new=logged.append)  # logged once
    assert logged == ["bad image"]


def test_percentiles_summarise_the_last_values_only():
    values = Percentiles(size=100)
    assert values.summary() == "n/a"
    for value in [1000.0] * 50 + [float(v) for v in range(1, 101)]:
        values.add(value)
    assert values.summary() == "p50 50.5 / p90 90.1 / p99 99.0"


def test_rate_meter_counts_ticks_inside_its_window():
    meter = RateMeter(window_s=0.2)
    for _ in range(4):
        meter.tick()
    assert meter.rate() == 20.0
    time.sleep(0.25)
    assert meter.rate() == 0.0
