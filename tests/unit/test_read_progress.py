"""How far a consumer has read its queue, which decides when silence is real."""

from __future__ import annotations

from messaging.consumer import CLOCK_MARGIN, ReadProgress


def test_after_a_start_nothing_is_judged_until_what_a_dead_predecessor_held_is_read():
    progress = ReadProgress(visibility_timeout=10)
    progress.started(100)
    progress.received(104, drained=True)  # the predecessor's messages may still be invisible
    assert progress.read_until(105) == 0
    progress.received(111, drained=True)  # read to the end once they are visible again
    assert progress.read_until(200) == 111


def test_a_backlog_is_read_up_to_its_oldest_message():
    progress = ReadProgress(visibility_timeout=10)
    progress.started(0)
    progress.received(20, drained=False, oldest_sent=15)
    assert progress.read_until(30) == 15 - CLOCK_MARGIN
    progress.received(25, drained=True)
    assert progress.read_until(30) == 25


def test_a_reply_waiting_on_a_retry_holds_back_deadlines_from_when_it_was_sent():
    progress = ReadProgress(visibility_timeout=10)
    progress.started(0)
    progress.received(11, drained=True)
    progress.taken("m-1", sent_at=50)  # its handler then fails: the database was unreachable
    progress.received(52, drained=True)
    assert progress.read_until(90) == 50 - CLOCK_MARGIN  # everything sent before it was handled
    progress.taken("m-1", sent_at=50)  # redelivered, and fails again
    progress.received(60, drained=True)
    assert progress.read_until(90) == 50 - CLOCK_MARGIN
    progress.settled("m-1")  # handled on its redelivery
    assert progress.read_until(100) == 60
    progress.received(95, drained=True)
    assert progress.read_until(100) == 95


def test_messages_handled_concurrently_hold_back_deadlines_until_the_last_is_handled():
    progress = ReadProgress(visibility_timeout=10)
    progress.started(0)
    progress.taken("slow", sent_at=20)  # a handler that takes long, from an earlier batch
    progress.received(21, drained=False, oldest_sent=20)
    progress.taken("fast", sent_at=22)
    progress.received(23, drained=True)  # a later receive read the queue to its end
    progress.settled("fast")
    assert progress.read_until(30) == 20 - CLOCK_MARGIN  # not 23: the slow one's reply may still win
    progress.settled("slow")
    assert progress.read_until(30) == 23


def test_messages_handed_back_on_shutdown_hold_nothing():
    progress = ReadProgress(visibility_timeout=10)
    progress.started(0)
    progress.received(15, drained=True)
    progress.taken("late", sent_at=16)
    progress.settled("late")  # handed back unhandled
    assert progress.read_until(30) == 15


def test_a_failing_receive_reads_nothing_until_the_queue_is_read_again():
    progress = ReadProgress(visibility_timeout=10)
    progress.started(0)
    progress.received(39, drained=True)
    # receives fail from 40 to 60: the frontier stays where the last good one left it
    assert progress.read_until(60) == 39
    progress.received(61, drained=True)
    assert progress.read_until(62) == 61
