"""How far a consumer has read its queue, which decides when silence is real."""
from __future__ import annotations

from messaging.consumer import CLOCK_MARGIN, ReadProgress


def test_after_a_start_deadlines_wait_for_what_a_dead_predecessor_held():
    progress = ReadProgress(visibility_timeout=10)
    progress.started(100)
    assert progress.read_until(105) == 105  # nothing after the start is judged yet...
    progress.received(104, drained=True)
    assert progress.read_until(105) == 105 and progress.read_until(200) == 110  # ...nor past the invisible window
    progress.received(111, drained=True)  # the queue read to its end once the window closed
    assert progress.read_until(200) == 200


def test_a_full_batch_is_not_the_end_of_the_queue():
    progress = ReadProgress(visibility_timeout=10)
    progress.started(0)
    progress.received(20, drained=False)
    assert progress.read_until(30) == 10
    progress.received(25, drained=True)
    assert progress.read_until(30) == 30


def test_a_reply_waiting_on_a_retry_holds_back_deadlines_from_when_it_was_sent():
    progress = ReadProgress(visibility_timeout=10)
    progress.started(0)
    progress.received(11, drained=True)
    progress.failed("m-1", sent_at=50)  # the database was unreachable
    progress.received(52, drained=True)
    assert progress.read_until(90) == 50 - CLOCK_MARGIN
    progress.settled("m-1")  # handled on its redelivery
    progress.received(95, drained=False)
    assert progress.read_until(100) == 95  # healthy again, but the backlog is not read yet
    progress.received(97, drained=True)
    assert progress.read_until(100) == 100


def test_a_failing_receive_holds_back_deadlines_until_the_queue_is_read_again():
    progress = ReadProgress(visibility_timeout=10)
    progress.started(0)
    progress.received(11, drained=True)
    progress.receive_failed(40)
    assert progress.read_until(60) == 40 - CLOCK_MARGIN
    progress.received(61, drained=True)
    assert progress.read_until(62) == 62
