"""The train-ID join's slot logic (:class:`kb_streams.join.TrainJoiner`), without streamz."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kb_streams.join import Joined, Late, TrainJoiner, join_all


def summary(out: list) -> list[tuple]:
    """What a consumer sees: train ID, items, missing inputs, reason; late records."""
    return [(o.train_id, tuple(sorted(o.parts.items())), o.missing, o.reason)
            if isinstance(o, Joined) else ("late", o.train_id, o.input, o.reason) for o in out]


def test_complete_trains_in_order_and_incomplete_closed_by_window():
    joiner = TrainJoiner(["a", "b"], window=3)
    out = join_all(joiner, [("a", 1, "a1"), ("a", 2, "a2"), ("b", 2, "b2"), ("b", 1, "b1"),
                            ("a", 3, "a3"), ("b", 4, "b4"), ("a", 4, "a4"), ("a", 7, "a7")])
    assert summary(out) == [
        (1, (("a", "a1"), ("b", "b1")), (), None),
        (2, (("a", "a2"), ("b", "b2")), (), None),
        (3, (("a", "a3"),), ("b",), "window"),
        (4, (("a", "a4"), ("b", "b4")), (), None),
        (7, (("a", "a7"),), ("b",), "end"),
    ]
    stats = joiner.stats
    assert (stats.matched, stats.partial, stats.dropped) == (3, 2, {"window": 1, "end": 1})
    assert stats.matching_ratio == pytest.approx(3 / 5)


def test_a_later_train_completing_never_closes_an_earlier_one():
    joiner = TrainJoiner(["a", "b"], window=5)
    assert joiner.add("a", 10, 1, 0) == []
    assert joiner.add("a", 11, 1, 0) == []
    assert joiner.add("b", 11, 2, 0) == []          # 11 complete, waits behind 10
    out = joiner.add("b", 10, 2, 0)
    assert [(o.train_id, o.complete) for o in out] == [(10, True), (11, True)]


def test_late_parts_never_reopen_and_duplicates_are_counted():
    joiner = TrainJoiner(["a", "b"], window=2)
    joiner.add("a", 1, "x", 0)
    joiner.add("a", 1, "again", 0)
    out = joiner.add("a", 3, "x", 0)                # clock 3: train 1 closes incomplete
    assert summary(out) == [(1, (("a", "x"),), ("b",), "window")]
    assert joiner.add("b", 1, "y", 0) == [Late(1, "b", "late")]
    stats = joiner.stats
    assert (stats.late, stats.duplicates, stats.open) == (1, 1, 1)
    assert stats.lag == {"a": 0, "b": 2}


def test_timeout_closes_a_train_a_stalled_input_never_delivers():
    joiner = TrainJoiner(["a", "b"], window=100, timeout=1.0)
    joiner.add("a", 1, "x", now=10.0)
    joiner.add("a", 2, "x", now=10.5)
    assert joiner.tick(10.9) == []
    assert summary(joiner.tick(11.0)) == [(1, (("a", "x"),), ("b",), "timeout")]
    assert summary(joiner.tick(11.5)) == [(2, (("a", "x"),), ("b",), "timeout")]


def test_timeout_of_a_later_train_closes_the_earlier_ones_first():
    joiner = TrainJoiner(["a", "b"], window=100, timeout=1.0)
    joiner.add("a", 2, "x", now=0.0)
    joiner.add("b", 1, "y", now=0.5)                 # opened later, but older
    assert [o.train_id for o in joiner.tick(1.0)] == [1, 2]


def test_latest_joins_as_of_and_waits_until_settled():
    joiner = TrainJoiner(["det"], latest=["motor"], window=5, max_age=3)
    assert joiner.add("det", 100, "d100", 0) == []      # motor never seen: waits
    assert joiner.add("motor", 98, 0.1, 0) == []        # seen, but not yet at 100
    assert summary(joiner.add("motor", 101, 0.2, 0)) == [
        (100, (("det", "d100"), ("motor", 0.1)), (), None)]
    assert summary(joiner.add("det", 101, "d101", 0)) == [
        (101, (("det", "d101"), ("motor", 0.2)), (), None)]


def test_latest_too_old_is_missing_never_a_silent_default():
    joiner = TrainJoiner(["det"], latest=["motor"], window=5, max_age=2)
    joiner.add("motor", 90, 0.1, 0)
    joiner.add("motor", 101, 0.3, 0)
    out = joiner.add("det", 100, "d100", 0)
    assert summary(out) == [(100, (("det", "d100"),), ("motor",), "stale")]


def test_latest_never_seen_waits_then_closes_incomplete_by_window():
    joiner = TrainJoiner(["det"], latest=["motor"], window=2)
    assert joiner.add("det", 1, "d", 0) == []
    out = joiner.add("det", 3, "d", 0)
    assert summary(out) == [(1, (("det", "d"),), ("motor",), "stale")]


def test_one_implausible_train_id_does_not_move_the_clock():
    joiner = TrainJoiner(["a", "b"], window=3, max_jump=100)
    joiner.add("a", 1000, "x", 0)
    assert joiner.add("a", 10**9, "bad", 0) == []     # held back
    out = joiner.add("b", 1000, "y", 0)               # consistent with the old clock
    assert summary(out) == [("late", 10**9, "a", "bad_train_id"),
                            (1000, (("a", "x"), ("b", "y")), (), None)]
    assert joiner.stats.clock == 1000 and joiner.stats.dropped == {"bad_train_id": 1}


def test_a_confirmed_jump_back_is_a_restart():
    joiner = TrainJoiner(["a", "b"], window=3, max_jump=100)
    joiner.add("a", 5000, "x", 0)
    joiner.add("a", 10, "x", 0)
    out = joiner.add("b", 10, "y", 0)
    assert summary(out) == [(5000, (("a", "x"),), ("b",), "restart"),
                            (10, (("a", "x"), ("b", "y")), (), None)]


def test_memory_is_bounded_by_the_window():
    joiner = TrainJoiner(["a", "b"], latest=["m"], window=8)
    for tid in range(10_000):
        joiner.add("a", tid, tid, 0)
        joiner.add("m", tid, tid, 0)                 # b never delivers
        assert len(joiner._slots) <= 8 and len(joiner._history["m"]) <= 10
    assert sys.getsizeof(joiner._order) < 1000


# -- property: any arrival order within the window gives the same output ----------------------
INPUTS, LATEST, WINDOW = ("a", "b", "c"), ("m",), 6


@st.composite
def arrivals(draw: st.DrawFn, in_order: bool) -> tuple[list, list]:
    """Parts of up to 30 trains (some dropped), and two arrival orders within the window.

    Each part arrives after its train by less than ``WINDOW`` trains; with ``in_order`` each
    input keeps its own order (as a bridge does), else only the slow input does.
    """
    n = draw(st.integers(1, 30))
    first = draw(st.integers(0, 10**6))
    present = draw(st.lists(st.lists(st.booleans(), min_size=4, max_size=4),
                            min_size=n, max_size=n))
    parts = [(name, first + t, f"{name}{t}") for t in range(n)
             for name, keep in zip(INPUTS + LATEST, present[t], strict=True) if keep]

    def order() -> list:
        delays = draw(st.lists(st.integers(0, WINDOW - 1), min_size=len(parts),
                               max_size=len(parts)))
        for name in INPUTS + LATEST if in_order else LATEST:
            mine = [i for i, p in enumerate(parts) if p[0] == name]
            for earlier, later in zip(mine, mine[1:], strict=False):
                gap = parts[later][1] - parts[earlier][1]
                delays[later] = max(delays[later], delays[earlier] - gap)
        keyed = sorted(range(len(parts)), key=lambda i: (parts[i][1] + delays[i], i))
        return [parts[i] for i in keyed]

    return order(), order()


def same_output_for_both(orders: tuple[list, list], ordered: bool) -> None:
    results = [summary(join_all(TrainJoiner(INPUTS, latest=LATEST, window=WINDOW,
                                            ordered=ordered), order)) for order in orders]
    assert results[0] == results[1]
    ids = [r[0] for r in results[0]]
    assert ids == sorted(set(ids))                      # once each, increasing


@settings(max_examples=60, deadline=None)
@given(arrivals(in_order=True))
def test_any_interleaving_of_inputs_within_the_window_gives_the_same_output(orders):
    same_output_for_both(orders, ordered=True)


@settings(max_examples=60, deadline=None)
@given(arrivals(in_order=False))
def test_unordered_inputs_any_order_within_the_window_gives_the_same_output(orders):
    same_output_for_both(orders, ordered=False)
