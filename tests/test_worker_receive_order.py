"""The worker-side source's re-order buffer and placement as plain logic: no Dask, no loop."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

from kb_streams.dask.order import Incomplete, Ready, ReceiveOrder, ReorderBuffer
from kb_streams.dask.placement import place


@dataclass(eq=False)
class Receiver:
    name: str
    worker: str | None = "w0"
    order: ReceiveOrder = field(default_factory=ReceiveOrder)


def ids(buffer: ReorderBuffer, now: float, flush: bool = False) -> list:
    out = []
    while (item := buffer.pop(now, flush)) is not None:
        out.append((type(item).__name__, item.train_id))
    return out


def test_a_result_waits_for_an_earlier_train_still_on_its_way() -> None:
    r0, r1 = Receiver("r0"), Receiver("r1", "w1")
    buffer = ReorderBuffer([r0, r1], wait=2.0)
    r1.order.empty("e1", taken=1, when=0.0)  # r1 handed out a train, not back yet
    r0.order.returned("e0", 0, 102)
    assert buffer.add(102, "", "r102", now=1.0)
    assert ids(buffer, now=1.5) == []  # r1's train may be 101
    r1.order.returned("e1", 0, 101)
    assert buffer.add(101, "", "r101", now=1.6)
    item = buffer.pop(now=1.7)
    assert isinstance(item, Ready) and item.parts == {"": "r101"} and not item.skipped
    assert ids(buffer, now=1.7) == [("Ready", 102)]
    assert not buffer.add(100, "", "late", now=1.8)  # after a later train: late
    assert len(buffer) == 0


def test_wait_bounds_the_hold_and_counts_the_trains_passed_over() -> None:
    r0, r1 = Receiver("r0"), Receiver("r1", "w1")
    buffer = ReorderBuffer([r0, r1], wait=2.0)
    r1.order.empty("e1", taken=1, when=0.0)
    buffer.add(100, "", "r100", now=0.0)
    buffer.last_emitted = 97
    assert ids(buffer, now=1.9) == []
    item = buffer.pop(now=2.0)  # overdue: goes without r1's train
    assert item.train_id == 100 and item.skipped == range(98, 100)


def test_a_receiver_running_nowhere_holds_nothing_back() -> None:
    r0, r1 = Receiver("r0"), Receiver("r1", worker=None)
    r1.order.empty("e1", taken=3, when=0.0)
    buffer = ReorderBuffer([r0, r1])
    r0.order.returned("e0", 0, 7)
    buffer.add(7, "", "r7", now=0.0)
    assert buffer.blockers(7) == [] and ids(buffer, now=0.0) == [("Ready", 7)]


def test_a_failed_train_is_dropped_silently() -> None:
    buffer = ReorderBuffer([Receiver("r0")])
    buffer.add(5, "", "part", now=0.0)
    buffer.fail(5)
    assert ids(buffer, now=0.0, flush=True) == [] and buffer.last_emitted is None


def test_sharded_trains_merge_or_are_dropped_incomplete() -> None:
    q1, q2 = Receiver("Q1"), Receiver("Q2", "w1")
    buffer = ReorderBuffer([q1, q2], sharded=True, wait=1.0)
    for tid in (10, 11):
        q1.order.returned("a", tid - 10, tid)
        buffer.add(tid, "Q1", f"q1-{tid}", now=0.0)
    q2.order.returned("b", 0, 11)  # Q2 delivered 11 first: its part of 10 can no longer come
    buffer.add(11, "Q2", "q2-11", now=0.1)
    dropped = buffer.pop(now=0.2)
    assert isinstance(dropped, Incomplete) and (dropped.train_id, dropped.missing) == (10, ["Q2"])
    ready = buffer.pop(now=0.2)
    assert ready.parts == {"Q1": "q1-11", "Q2": "q2-11"} and not ready.skipped


def test_max_buffered_lets_the_oldest_go() -> None:
    r0, r1 = Receiver("r0"), Receiver("r1", "w1")
    r1.order.empty("e1", taken=1, when=0.0)
    buffer = ReorderBuffer([r0, r1], wait=60.0, max_buffered=2)
    for tid in (1, 2, 3):
        buffer.add(tid, "", tid, now=0.0)
    assert ids(buffer, now=0.0) == [("Ready", 1)]


def test_next_deadline() -> None:
    buffer = ReorderBuffer([Receiver("r0")], wait=2.0)
    assert buffer.next_deadline(now=5.0, probe_after=0.2) == 6.0  # nothing held: a second
    buffer.add(1, "", 1, now=5.0)
    assert buffer.next_deadline(now=5.1, probe_after=0.2) == 5.2
    assert buffer.next_deadline(now=5.3, probe_after=0.2) == 7.0


def test_placement_spreads_and_replaces() -> None:
    receivers = [Receiver(f"r{i}", worker=None) for i in range(4)]
    assert place(receivers, []) == 0 and all(r.worker is None for r in receivers)
    place(receivers, ["a"])
    assert {r.worker for r in receivers} == {"a"}
    moved = place(receivers, ["a", "b"])  # a new worker takes half
    assert moved == 2 and sorted(r.worker for r in receivers) == ["a", "a", "b", "b"]
    moved = place(receivers, ["b", "c"])  # "a" left
    assert moved == 2 and sorted(r.worker for r in receivers) == ["b", "b", "c", "c"]


def test_order_logic_and_worker_side_import_no_graph_node() -> None:
    """The re-order logic and placement import no Dask; the worker side no graph node."""
    code = ("import sys, kb_streams.dask.order, kb_streams.dask.placement\n"
            "assert 'distributed' not in sys.modules and 'streamz' not in sys.modules\n"
            "import kb_streams.dask.receiver\n"
            "assert not {'streamz', 'kb_streams.dask.offload', 'kb_streams.dask.on_workers',"
            " 'kb_streams.dask.base'} & set(sys.modules), sorted(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
