"""``kb-streams demo``: the pump-probe graph reproduces the simulator's ground truth, live."""

from __future__ import annotations

import argparse
import math
import re
import signal
import subprocess
import sys
import time

import pytest

from kb_streams.cli import main
from kb_streams.cli._live_options import dask_address
from kb_streams.cli.demo import _bins, _roi, _source_key
from kb_streams.demo import PumpProbeSetup, ratio_of_train
from kb_streams.server import BridgeServer
from kb_streams.simulate import Scene, simulate
from kb_streams.train import Train

CLI = [sys.executable, "-c", "import sys; from kb_streams.cli import main; sys.exit(main())"]
CURVE_ROW = re.compile(r"^\s*(-?\d+\.\d+)\s+(\d+)\s+(\d+\.\d+) ± (\d+\.\d+)", re.MULTILINE)


def expected_ratio(delay: float) -> float:
    """The simulator's ground truth: 1 + 0.5 * S(delay)."""
    return 1.0 if delay < 0 else 1.0 + 0.5 * (1.0 - math.exp(-delay))


def curve_rows(text: str) -> dict[float, tuple[int, float]]:
    """{delay: (n, mean)} from the last curve table in ``text``."""
    return {delay: (n, mean) for delay, (n, mean, _) in curve_rows_with_std(text).items()}


def curve_rows_with_std(text: str) -> dict[float, tuple[int, float, float]]:
    """{delay: (n, mean, std)} from the last curve table in ``text``."""
    rows = {}
    for delay, n, mean, std in CURVE_ROW.findall(text):
        rows[float(delay)] = (int(n), float(mean), float(std))
    return rows


def test_ratio_of_one_train_matches_the_ground_truth():
    sim = simulate("AGIPD-modules", pulses=6, pool_size=5, extras=("xgm", "delay"),
                   scene=Scene(trains_per_step=1))
    setup = PumpProbeSetup()
    for _ in range(5):
        train = Train(*next(sim))
        delay, ratio = ratio_of_train(train, setup)
        truth = sim.truth(train.train_id)
        assert delay == pytest.approx(truth.delay, abs=0.02)
        assert ratio == pytest.approx(truth.ratio, abs=0.01)


def test_ratio_stacks_all_modules_and_needs_only_the_roi_module():
    setup = PumpProbeSetup()
    sim = simulate("AGIPD-modules", pulses=4, pool_size=2, extras=("xgm", "delay"),
                   faults={"missing_module": "3+7"}, scene=Scene(trains_per_step=1))
    next(sim)
    train = Train(*next(sim))  # the 4 ps step, modules 3 and 7 missing (NaN in the stack)
    assert train.stack_modules().module_present.sum() == 14
    assert ratio_of_train(train, setup)[1] == pytest.approx(sim.truth(train.train_id).ratio,
                                                            abs=0.01)
    no_roi = simulate("AGIPD-modules", pulses=4, pool_size=1, extras=("xgm", "delay"),
                      faults={"missing_module": 0})
    with pytest.raises(KeyError, match="module 0 is missing"):
        ratio_of_train(Train(*next(no_roi)), setup)


def test_demo_runs_the_embedded_simulator_and_prints_the_curve():
    started = time.monotonic()
    out = subprocess.run(
        [*CLI, "demo", "--trains", "20", "--pulses", "4", "--rate", "40"],
        capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert "20 trains processed" in out.stdout
    rows = curve_rows_with_std(out.stdout)
    # 5 delay steps x 4 trains each (the embedded simulator's scan)
    assert sorted(rows) == [-1.0, 0.25, 1.5, 2.75, 4.0]
    for delay, (n, mean, std) in rows.items():
        assert n == 4
        # the XGM reads with 1% noise, so the trains of a delay step scatter (4 pulses: ~2%)
        assert 0.001 <= std <= 0.05, (delay, out.stdout)
        assert abs(mean - expected_ratio(delay)) <= 4 * std / n ** 0.5 + 0.002, (delay, out.stdout)
    assert "Traceback" not in out.stderr
    assert time.monotonic() - started < 60


def test_ctrl_c_ends_the_demo_cleanly_with_a_summary():
    proc = subprocess.Popen(
        [*CLI, "demo", "--pulses", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 40
        for line in proc.stdout:  # plain status lines (not a terminal) every 2 s
            lines.append(line)
            if line.startswith("trains ") or time.monotonic() > deadline:
                break
        assert lines and lines[-1].startswith("trains "), lines
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "interrupted; " in rest and "Traceback" not in err
    assert "pumped/unpumped ratio" in rest


def test_demo_reads_a_real_bridge_with_other_source_names(tcp_endpoint, capsys,
                                                          restore_signals):
    sim = simulate("AGIPD-modules", pulses=4, pool_size=3, extras=("xgm", "delay"),
                   names={"delay": "FXE_AUXT_LIC/DOOCS/PPODL"}, scene=Scene(trains_per_step=2))
    with BridgeServer(tcp_endpoint, sock="PUSH") as server:
        server.start(sim, rate=50)
        code = main(["demo", "--endpoint", tcp_endpoint, "--sock", "PUSH", "--trains", "6",
                     "--delay", "FXE_AUXT_LIC/DOOCS/PPODL[actualPosition]",
                     "--bins=-2.25,4.75,7"])
    out = capsys.readouterr().out
    assert code == 0
    assert "simulator:" not in out  # nothing embedded when an endpoint is given
    rows = curve_rows(out)
    assert sum(n for n, _ in rows.values()) == 6
    for delay, (n, mean) in rows.items():
        if n:
            truth = min(expected_ratio(d) for d in (-1.0, 1.5, 4.0)
                        if delay - 0.5 <= d < delay + 0.5)
            assert mean == pytest.approx(truth, abs=0.01)


def test_demo_refuses_options_that_do_not_apply_with_dask(capsys):
    assert main(["demo", "--dask", "--max-in-flight", "2"]) == 2  # before starting anything
    assert "--max-in-flight applies without --dask only" in capsys.readouterr().err


def test_argument_types():
    assert _source_key("image.data")("SRC/A:output[data.x]") == ("SRC/A:output", "data.x")
    assert _source_key("image.data")("SPB_DET/DET/*CH0:xtdf") == ("SPB_DET/DET/*CH0:xtdf",
                                                                  "image.data")
    assert _roi("3:10:20,0:128") == (3, (10, 20), (0, 128))
    assert _bins("-1,4,5") == pytest.approx((-1, 0, 1, 2, 3, 4))
    assert dask_address("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    assert dask_address("exflonc12:8786") == "exflonc12:8786"
    for parse, text in [(_roi, "3:20:10,0:128"), (_roi, "3,10,20"), (_bins, "4,-1,5"),
                        (_bins, "a,b,c"), (dask_address, "demo.py"), (dask_address, "host")]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
