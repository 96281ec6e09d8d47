"""Admission control's arithmetic: when to refuse an order, and how long to ask the client to wait."""

from __future__ import annotations

from order_svc.admission import RATE_WINDOW, Admission


def test_orders_are_accepted_up_to_the_bound_counting_those_accepted_since_the_last_sample():
    admission = Admission(max_in_flight=5, horizon=60)
    admission.update(in_flight=3, finished=0)
    assert admission.retry_after() is None
    admission.accepted()
    assert admission.retry_after() is None  # the fifth may still come in
    admission.accepted()
    assert admission.in_flight == 5 and admission.retry_after() == 1
    admission.update(in_flight=4, finished=0)  # the next sample saw one finish
    assert admission.retry_after() is None


def test_retry_after_is_the_time_the_excess_takes_to_drain_at_the_rate_orders_finish():
    admission = Admission(max_in_flight=100, horizon=60)
    admission.update(in_flight=139, finished=int(4 * RATE_WINDOW))  # 4 orders finish a second
    assert admission.retry_after() == 10  # 40 over the bound at 4/s
    admission.update(in_flight=1000, finished=0)  # nothing finishes: wait, but never over 30 s
    assert admission.retry_after() == 30
