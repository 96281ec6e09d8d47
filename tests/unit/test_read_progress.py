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
    progress.failed("m-1", sent_at=50)  # the database was unreachable
    progress.received(52, drained=True)
    assert progress.read_until(90) == 11  # the read before the failure still counts, nothing after
    progress.received(60, drained=True)
    assert progress.read_until(90) == 11
    progress.settled("m-1")  # handled on its redelivery
    progress.received(95, drained=True)
    assert progress.read_until(100) == 95


def test_a_failing_receive_holds_back_deadlines_until_the_queue_is_read_again():
    progress = ReadProgress(visibility_timeout=10)
    progress.started(0)
    progress.received(39, drained=True)
    progress.receive_failed(40)
    assert progress.read_until(60) == 39
    progress.received(61, drained=True)
    assert progress.read_until(62) == 61
