"""The dashboard's web process: its own process, fed over real sockets, never an orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import psutil
import pytest
from streamz import Stream

from _waiting import wait_for, wait_until

pytest.importorskip("bokeh", reason="the dashboard needs the web extra (bokeh)")

from kb_streams.web import Dashboard  # noqa: E402
from kb_streams.web.mirror import Mirror  # noqa: E402

PARENT = """
import sys, time
from streamz import Stream
from kb_streams.web import Dashboard
dashboard = Dashboard("orphan test")
Stream().to_dashboard("x", kind="curve", dashboard=dashboard)
dashboard.serve(port=0)
print(dashboard.web_pid, flush=True)
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_web_process_exits_when_the_graph_process_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()  # the parent prints once served, or exits
        assert line.strip().isdigit(), f"the parent did not serve: {line!r}"
        web = int(line)
        assert web != parent.pid and psutil.Process(web).ppid() == parent.pid
        parent.send_signal(signal.SIGKILL)  # no clean-up code runs in the parent
        parent.wait(10)
        assert wait_for(lambda: _gone(web), 15), "the web process outlived its parent"
    finally:
        parent.kill()
        parent.wait(10)


def test_the_page_is_served_by_another_process_that_stop_ends():
    dashboard = Dashboard("served")
    Stream().to_dashboard("x", kind="curve", dashboard=dashboard)
    url = dashboard.serve(port=0)
    web = dashboard.web_pid
    try:
        assert web is not None and web != os.getpid()
        assert b"served" in urllib.request.urlopen(url, timeout=10).read()
    finally:
        dashboard.stop()
    assert wait_for(lambda: _gone(web), 10)
    assert dashboard.web_pid is None


def test_a_taken_port_is_an_os_error():
    first = Dashboard("first")
    Stream().to_dashboard("x", kind="curve", dashboard=first)
    first.serve(port=0)
    try:
        second = Dashboard("second")
        Stream().to_dashboard("x", kind="curve", dashboard=second)
        port = int(first.url.rsplit(":", 1)[1].strip("/"))
        with pytest.raises(OSError):
            second.serve(port=port)
        assert second.web_pid is None
    finally:
        first.stop()


def test_a_mirror_gets_each_new_item_once_and_its_controls_reach_the_graph():
    """The web process's side of the channels, driven from this test: a page's ROI change
    reaches the graph's results; an image comes as colour indices, not again unless new."""
    from kb_streams.web.server import DashboardServer

    dashboard = Dashboard("mirror")
    roi = dashboard.roi("ROI", ((0, 2), (0, 2)))
    source = Stream()
    source.to_dashboard("camera", kind="image", dashboard=dashboard)
    results = source.map(lambda image: float(image[roi.slices].sum())).sink_to_list()
    server = DashboardServer(dashboard, port=0)
    server.start()
    mirror = Mirror(*server.endpoints)  # a second web side on the same channels
    mirror.start()
    try:
        mirror.session_opened()
        source.emit(np.ones((8, 8)))
        wait_until(lambda: "camera" in mirror.plots
                   and mirror.plots["camera"].columns is not None, 10, "the image")
        view = mirror.plots["camera"]
        assert view.columns["image"].dtype == np.uint8 and view.columns["image"].shape == (8, 8)
        version = roi.version
        mirror.send({"type": "set", "name": "ROI", "value": [[0, 4], [0, 4]],
                     "by": "browser session test"})
        assert roi.wait_changed(version, 10)
        source.emit(np.ones((8, 8)))
        assert results == [4.0, 16.0]
        assert roi.changes[-1].by == "browser session test"
        wait_until(lambda: mirror.plots["camera"].version == 2, 10, "the second image")
    finally:
        mirror.stop()
        server.stop()
