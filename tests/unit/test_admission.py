"""Admission control's arithmetic: when to refuse an order, and how long to ask the client to wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from order_svc.admission import RATE_WINDOW, SAMPLE_INTERVAL, Admission, adaptive_bound, admits, retry_after


def test_an_order_is_admitted_while_those_in_flight_with_it_are_within_the_bound():
    # The count under the lock includes the order being admitted.
    assert admits(in_flight=1, max_in_flight=1)
    assert admits(in_flight=5, max_in_flight=5)  # the fifth may still come in
    assert not admits(in_flight=6, max_in_flight=5)


def test_retry_after_is_the_time_the_excess_takes_to_drain_at_the_rate_orders_finish():
    assert retry_after(40, finishing_rate=4.0) == 10  # 40 over the bound at 4/s
    assert retry_after(1, finishing_rate=4.0) == 1  # never less than a second
    assert retry_after(1000, finishing_rate=0.0) == 30  # nothing finishes: wait, but never over 30 s
    assert retry_after(0, finishing_rate=4.0) == 1  # refused, although orders finished since: soon


def test_a_refused_order_waits_for_the_orders_above_the_bound_to_finish():
    admission = Admission(max_in_flight=100, horizon=60)
    admission.sampled(in_flight=139, finished=int(4 * RATE_WINDOW), now=0.0)  # 4 orders finish a second
    assert admission.retry_after() == 10  # 40 over the bound (this one included) at 4/s
    admission.sampled(in_flight=1000, finished=0, now=1.0)
    assert admission.retry_after() == 30


def test_the_fast_path_refuses_only_on_a_recent_count_at_the_bound():
    admission = Admission(max_in_flight=5, horizon=60)
    assert not admission.full(now=0.0)  # nothing counted yet: ask the database
    admission.counted(4, now=10.0)
    assert not admission.full(now=10.1)  # room for one more
    admission.counted(5, now=10.2)  # the fifth was admitted
    assert admission.full(now=10.3)
    assert not admission.full(now=10.2 + SAMPLE_INTERVAL)  # too old: orders may have finished; count again


def test_a_sample_gives_the_finishing_rate_at_most_twice_a_second():
    admission = Admission(max_in_flight=5, horizon=60)
    assert admission.needs_sample(now=0.0)
    admission.sampled(in_flight=7, finished=30, now=0.0)
    assert admission.finishing_rate == 30 / RATE_WINDOW and admission.in_flight == 7 and admission.full(now=0.1)
    assert not admission.needs_sample(now=SAMPLE_INTERVAL / 2)
    assert admission.needs_sample(now=SAMPLE_INTERVAL)
    admission.counted(3, now=0.2)  # a count under the lock does not stand in for a sample's rate
    assert not admission.full(now=0.3) and not admission.needs_sample(now=0.3)


def test_orders_older_than_the_start_bound_are_not_counted():
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert Admission(max_in_flight=5, horizon=25).cutoff(now) == now - timedelta(seconds=25)


def test_the_bound_follows_the_rate_orders_finish_times_the_target_between_the_floor_and_the_cap():
    assert adaptive_bound(16.7, target=5, least=20, most=500) == 84  # 1,000 a minute finish: 84 may wait 5 s
    assert adaptive_bound(3.5, target=5, least=20, most=500) == 20  # a slow hour: no lower than the floor
    assert adaptive_bound(0.0, target=5, least=20, most=500) == 20  # idle: a first wave gets in
    assert adaptive_bound(400.0, target=5, least=20, most=500) == 500  # never above the operator's cap
    assert adaptive_bound(400.0, target=0, least=20, most=100) == 100  # target 0: the fixed bound
    assert adaptive_bound(0.0, target=5, least=20, most=4) == 4  # a cap below the floor wins


def test_on_a_slow_hour_the_adaptive_bound_refuses_what_a_fixed_one_would_let_in():
    adaptive = Admission(max_in_flight=500, horizon=60, target=5, min_in_flight=20)
    fixed = Admission(max_in_flight=500, horizon=60)
    for admission in (adaptive, fixed):
        admission.sampled(in_flight=40, finished=int(4 * RATE_WINDOW), now=0.0)  # 4 finish a second
    assert adaptive.bound() == 20 and adaptive.full(now=0.1)
    assert adaptive.retry_after() == 6  # 21 over the bound of 20 (this one included) at 4/s
    assert fixed.bound() == 500 and not fixed.full(now=0.1)
    adaptive.sampled(in_flight=40, finished=int(20 * RATE_WINDOW), now=1.0)  # a fast hour: 20 a second
    assert adaptive.bound() == 100 and not adaptive.full(now=1.1)


def test_after_a_quiet_hour_the_bound_is_what_the_system_carried_not_what_it_finished_lately():
    admission = Admission(max_in_flight=500, horizon=60, target=5, min_in_flight=20)
    # Under load the deployment finished 30 a second: better than anything remembered, to be kept.
    assert admission.sampled(in_flight=100, finished=int(30 * RATE_WINDOW), best=None, now=0.0)
    assert admission.bound() == 150
    # An hour later nothing finishes; the remembered best (read with the sample) keeps the door open.
    assert not admission.sampled(in_flight=0, finished=0, best=30.0, now=3600.0)
    assert admission.capacity() == 30.0 and admission.bound() == 150
    # Once the memory is gone (nothing read), the floor is what is left.
    admission.sampled(in_flight=0, finished=0, best=None, now=90_000.0)
    assert admission.bound() == 20
