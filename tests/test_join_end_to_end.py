"""End to end: a detector bridge and a late, jittery, lossy slow-data bridge, joined by train ID.

The simulator's sources are split over two PUSH bridges (:class:`SplitServer`): the camera on
one, the XGM, delay line and motor on the other, released 0.1-0.5 s late and dropping 5% of
trains. ``Stream.from_karabo_bridge([det, slow])`` must give every train both bridges delivered
exactly once, in order, complete, and put every other one on ``.partial`` with its reason.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from _waiting import wait_until
from streamz import Stream

from kb_streams.simulate import simulate
from kb_streams.simulate.split import SplitServer, parse_part

TRAINS, RATE = 120, 20.0


@pytest.mark.timeout(60)
def test_two_bridges_one_late_and_lossy_join_exactly_once_in_order():
    parts = [parse_part("det=*CAM*:jitter=0.05"),
             parse_part("slow=*XGM*+*PPODL*+*MOTOR*:delay=0.1,jitter=0.4,drop=0.05")]
    with SplitServer(parts, sock="PUSH", seed=3) as split:
        det, slow = split.endpoints
        node = Stream.from_karabo_bridge([det, slow], "PULL", window=20, timeout=1.0)
        out, partial, late = (node.sink_to_list(), node.partial.sink_to_list(),
                              node.late.sink_to_list())
        node.start()
        serving = threading.Thread(target=split.serve, daemon=True,
                                   args=(simulate("CAMERA", pool_size=1),),
                                   kwargs={"limit": TRAINS, "rate": RATE})
        try:
            serving.start()
            wait_until(lambda: len(out) + len(partial) >= TRAINS, 30, "every train accounted")
        finally:
            split.stop()
            serving.join(5)
            node.stop()
            assert node.join(5)
        dropped = split.stats()["slow"]["dropped"]
    ids = [train.train_id for train in out]
    assert ids == sorted(set(ids))                                     # once each, in order
    assert all(len(train.sources) == 5 for train in out)               # complete
    missed = {record.train_id: record for record in partial}
    assert len(missed) == len(partial) == dropped > 0
    assert not set(ids) & set(missed)
    first = min(ids + list(missed))
    assert set(ids) | set(missed) == set(range(first, first + TRAINS))
    assert all(r.missing == (slow,) and r.reason in ("window", "timeout")
               for r in missed.values())
    assert late == [] and node.stats.matched == len(ids)


def test_kb_streams_simulate_split_serves_parts_a_join_reads():
    proc = subprocess.Popen(
        [sys.executable, "-m", "kb_streams.cli", "simulate", "-d", "CAMERA", "--pool-size", "1",
         "--sock", "PUSH", "--endpoint", "tcp://127.0.0.1:0", "--trains", "60", "--rate", "30",
         "--split", "det=*CAM*", "--split", "slow=*XGM*+*PPODL*+*MOTOR*:delay=0.2,jitter=0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert all(line.startswith("Serving part ") for line in lines), lines
        node = Stream.from_karabo_bridge([line.split()[-1] for line in lines], "PULL",
                                         window=20, timeout=1.0)
        out = node.sink_to_list()
        node.start()
        try:
            assert proc.wait(30) == 0
            wait_until(lambda: len(out) >= 20, 10, "20 joined trains")
        finally:
            node.stop()
            assert node.join(5)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=30)
    ids = [t.train_id for t in out]       # PUSH sends nothing before a reader connects
    assert ids == sorted(set(ids)) and all(len(t.sources) == 5 for t in out)


def test_the_joined_scan_example_saves_and_reopens_its_results(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "examples" / "joined_scan_saved.py"
    run = subprocess.run([sys.executable, str(example), "--trains", "24", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "joined " in run.stdout and "scan passes [0] finished" in run.stdout
    assert (tmp_path / "trains.h5").exists() and (tmp_path / "curves.h5").exists()
