"""``kb-streams bench run``: ``Stream.from_run(rate=None)`` feeding a graph vs EXtra-data's own
``run.trains()`` loop doing the same work, on one run.

The work per train is the same function in both: the per-pulse sum of a corner of every AGIPD
module through the detector object, and the XGM intensity. The figure is the ratio of trains/s
(target >= 0.9: the graph costs at most 10 % over the plain loop). Rounds alternate the two, and
the median of each is reported. Without ``--run``, a mock run is written with EXtra-data's mock
devices: ``--modules`` raw AGIPD modules, ``--trains`` trains of ``--frames`` frames.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _work(train) -> float:
    from kb_streams.components import AGIPD1M

    image = AGIPD1M(train).get_array("image.data", roi=np.s_[0:1, :64, :64])
    return float(image.sum())


def _extra_data_loop(path: str) -> tuple[int, float]:
    from extra_data import RunDirectory

    from kb_streams import Train

    run = RunDirectory(path)
    start = time.perf_counter()
    n = 0
    for _, data in run.trains():
        _work(Train(data))
        n += 1
    return n, time.perf_counter() - start


def _from_run(path: str) -> tuple[int, float]:
    from kb_streams.run_source import from_run

    source = from_run(path, rate=None)
    done = source.map(_work).sink_to_list()
    start = time.perf_counter()
    source.start()
    if not source.join(timeout=600):
        raise TimeoutError("from_run did not finish within 600 s")
    return len(done), time.perf_counter() - start


def _mock_run(directory: Path, modules: int, trains: int, frames: int) -> str:
    from extra_data.tests.mockdata import write_file
    from extra_data.tests.mockdata.detectors import AGIPDModule

    for modno in range(modules):
        write_file(str(directory / f"RAW-R0001-AGIPD{modno:02}-S00000.h5"),
                   [AGIPDModule(f"SPB_DET_AGIPD1M-1/DET/{modno}CH0", frames_per_train=frames)],
                   ntrains=trains, chunksize=32, format_version="1.0")
    return str(directory)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", help="a run directory (default: a mock AGIPD run)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--modules", type=int, default=4, help="mock run: modules (default 4)")
    parser.add_argument("--trains", type=int, default=100, help="mock run: trains (default 100)")
    parser.add_argument("--frames", type=int, default=4, help="mock run: frames (default 4)")


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = args.run
        if path is None:
            path = _mock_run(Path(tmp), args.modules, args.trains, args.frames)
        loop_rates, source_rates = [], []
        for _ in range(args.rounds):
            n, seconds = _extra_data_loop(path)
            loop_rates.append(n / seconds)
            n, seconds = _from_run(path)
            source_rates.append(n / seconds)
        loop, source = statistics.median(loop_rates), statistics.median(source_rates)
        print(f"run.trains() loop: {loop:.1f} trains/s (median of {args.rounds})")
        print(f"Stream.from_run(rate=None) graph: {source:.1f} trains/s")
        print(f"ratio from_run / run.trains(): {source / loop:.2f} (target >= 0.9)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
