"""The benchmark's pure parts: the mix, percentiles, the knee of a ramp."""

from collections import Counter

import pytest

from stack.bench.stats import DEFAULT_MIX, P99_LIMIT, RatePoint, by_service, knee, latency, parse_mix, sequence


def test_a_mix_is_normalised_to_shares():
    assert parse_mix(DEFAULT_MIX) == {"success": 0.7, "decline": 0.1, "undeliverable": 0.1, "bounce": 0.1}
    assert parse_mix("success=1, bounce=1,") == {"success": 0.5, "bounce": 0.5}
    assert parse_mix("success=3,decline=0") == {"success": 1.0}


@pytest.mark.parametrize("text", ["", "success", "success=1,success=2", "refund=1", "success=-1,decline=2", "success=0"])
def test_a_wrong_mix_is_refused(text):
    with pytest.raises(ValueError):
        parse_mix(text)


def test_a_sequence_follows_the_mix_evenly():
    kinds = sequence(parse_mix(DEFAULT_MIX), 100)
    assert Counter(kinds) == {"success": 70, "decline": 10, "undeliverable": 10, "bounce": 10}
    assert Counter(kinds[:10])["success"] == 7  # spread out, not in blocks


def test_percentiles_interpolate_between_closest_ranks():
    figures = latency([float(i) for i in range(1, 101)])  # 1 .. 100
    assert (figures.count, figures.p50, figures.max) == (100, 50.5, 100.0)
    assert figures.p95 == pytest.approx(95.05)
    assert figures.p99 == pytest.approx(99.01)
    assert latency([2.0]).p99 == 2.0
    assert latency([]).count == 0


def test_the_knee_is_the_highest_rate_sustained_below_the_first_that_is_not():
    points = [
        RatePoint(200, 199, 0.8),
        RatePoint(400, 398, 1.2),
        RatePoint(600, 590, 2.9),
        RatePoint(900, 700, 2.5),  # fast enough, but fell behind the offered rate
        RatePoint(1200, 1190, 1.0),  # past a rate that failed: not the knee
    ]
    assert knee(points) == 600
    assert knee([RatePoint(200, 200, P99_LIMIT + 0.1)]) is None
    assert knee([RatePoint(200, 200, 1.0, unfinished=1)]) is None
    assert knee([]) is None


def test_a_service_s_figures_are_those_of_all_its_processes():
    per_process = {"orchestrator": 0.5, "orchestrator#1": 0.25, "order_svc": 1.0, "emulator": 2.0, "postgres": 0.125}
    assert by_service(per_process) == {"orchestrator": 0.75, "order_svc": 1.0, "emulator": 2.0, "postgres": 0.125}
