"""The dashboard without a browser: slots, plots, parameters, the sink, the CLI options."""

from __future__ import annotations

import logging
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from streamz import Stream

pytest.importorskip("bokeh", reason="the dashboard needs the web extra (bokeh)")

from kb_streams.reduce import BinnedStats  # noqa: E402
from kb_streams.web import Dashboard  # noqa: E402
from kb_streams.web.dashboard import feed_counters  # noqa: E402

CLI = [sys.executable, "-m", "kb_streams.cli"]


def test_a_missing_web_extra_says_what_to_install():
    code = ("import sys, streamz; sys.modules['bokeh'] = None\n"
            "try:\n"
            "    streamz.Stream().to_dashboard('x')\n"
            "except ImportError as exc:\n"
            "    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == ("MissingExtraError the kb_streams dashboard needs Bokeh: "
                                  "pip install 'kb-streams[web]'"), out.stderr


def test_an_image_is_reduced_once_per_item_whatever_the_number_of_readers():
    dashboard = Dashboard()
    source = Stream()
    plot = source.to_dashboard("camera", kind="image", dashboard=dashboard).plot
    source.emit(np.ones((2048, 1024), np.uint16))
    first = plot.frame()
    assert plot.frame().columns is first.columns  # a second session: no second reduction
    assert first.columns["image"][0].shape == (512, 256)
    assert (first.columns["dw"], first.columns["dh"]) == ([1024], [2048])
    source.emit(np.zeros((2048, 1024)))
    assert plot.frame().state.version == 2 and plot.frame().columns is not first.columns


def test_a_bad_item_shows_on_its_plot_and_the_graph_goes_on():
    dashboard = Dashboard()
    source = Stream()
    plot = source.to_dashboard("camera", kind="image", dashboard=dashboard).plot
    scalar = source.map(np.mean).to_dashboard("mean", kind="scalar", dashboard=dashboard)
    source.emit(np.ones(5))  # 1D: not an image
    assert "ValueError" in plot.frame().error
    assert scalar.plot.slot.state().value == 1.0
    raw = Stream()
    scalar_sink = raw.to_dashboard("raw scalar", kind="scalar", dashboard=dashboard)
    raw.emit(object())  # not a number: counted and shown, not raised into the graph
    raw.emit(2.0)
    assert scalar_sink.n_errors == 1 and "raw scalar" in dashboard.errors[-1][1]
    assert scalar_sink.plot.slot.state().value == 2.0


def test_reset_pause_errors_and_counters_reach_the_graph_nodes():
    dashboard = Dashboard()
    source = Stream()
    gated = dashboard.gate(source)
    binned = gated.reduce_online(BinnedStats([0, 1, 2], dim="delay"))
    plot = binned.to_dashboard("curve", kind="curve", dashboard=dashboard).plot
    binned.errors = Stream()  # an errors stream, as the node interface gives every node
    dashboard.watch(binned)
    for pair in [(0.5, 1.0), (1.5, 2.0), "bad"]:
        source.emit(pair)
    assert feed_counters(binned) == {"dropped": 0, "errors": 1}
    assert plot.frame().columns["x"].tolist() == [0.5, 1.5]
    binned.errors.emit("train 7: boom")
    assert dashboard.errors[-1][1] == "train 7: boom"
    plot.reset()
    assert binned.reduction.n_updates == 0
    dashboard.paused.set(True, by="test")
    source.emit((0.5, 3.0))
    assert binned.reduction.n_updates == 0
    dashboard.paused.set(False, by="test")
    source.emit((0.5, 3.0))
    assert plot.frame().columns["y"].tolist() == [3.0]


def test_parameter_changes_are_logged(caplog):
    dashboard = Dashboard()
    roi = dashboard.roi("ROI", ((0, 10), (0, 10)))
    with caplog.at_level(logging.INFO, logger="kb_streams.web.params"):
        roi.set(((5, 15), (0, 10)), by="browser session 3")
    assert "parameter 'ROI' changed by browser session 3: ((0, 10), (0, 10)) -> " \
           "((5, 15), (0, 10))" in caplog.text
    with pytest.raises(ValueError, match="empty ROI"):
        roi.set(((5, 5), (0, 10)))


def test_the_page_is_served_with_no_external_resource():
    dashboard = Dashboard("served")
    Stream().to_dashboard("x", kind="curve", dashboard=dashboard)
    url = dashboard.serve(port=0)
    try:
        page = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        dashboard.stop()
    assert "/static/js/bokeh.min.js" in page
    assert "http://" not in page and "https://" not in page and "//cdn" not in page


def _run(args, timeout=120):
    out = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return out


def test_demo_serves_its_dashboard_and_no_web_does_not():
    out = _run(["demo", "--trains", "6", "--pulses", "4", "--rate", "40", "--web-port", "0"])
    assert "dashboard: http://127.0.0.1:" in out.stdout
    out = _run(["demo", "--trains", "3", "--pulses", "4", "--rate", "40", "--no-web"])
    assert "dashboard:" not in out.stdout


def test_run_serves_what_the_pipeline_put_on_the_dashboard(tmp_path):
    pipeline = tmp_path / "xgm_pipeline.py"
    pipeline.write_text(
        "def pipeline(source):\n"
        "    xgm = source.map(lambda t: t['SA1_XTD2_XGM/XGM/DOOCS:output',"
        " 'data.intensityTD'].ndarray()[:4])\n"
        "    xgm.to_dashboard('XGM', kind='scalar')\n"
        "    return xgm\n")
    out = _run(["run", str(pipeline), "--trains", "4", "--pulses", "4", "--web-port", "0"])
    assert "dashboard: http://127.0.0.1:" in out.stdout
