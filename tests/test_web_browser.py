"""The dashboard in a real browser: Debian's chromium driven by Playwright.

Skipped, with the reason, where chromium or Playwright is missing (``.ci/run`` installs
chromium). The page's screenshot is saved as ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from _waiting import wait_for, wait_until

pytest.importorskip("bokeh", reason="the dashboard needs the web extra (bokeh)")
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="browser tests need the playwright package")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: "
                                "apt-get install -y chromium (.ci/run does)")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

# a fingerprint of every plot's data source (named "data: PLOT" by kb_streams.web.page)
HASH_JS = """() => {
  const out = {};
  for (const doc of Bokeh.documents) {
    const models = doc.all_models ?? doc._all_models.values();
    for (const m of models) {
      if (!m.name || !m.name.startsWith('data: ')) continue;
      let h = 0, n = 0;
      const visit = (v) => {
        if (v == null) return;
        if (typeof v === 'number') { h = (h * 31 + (Number.isFinite(v) ? v * 1000 : 7)) % 1e12; n++; return; }
        if (ArrayBuffer.isView(v) || Array.isArray(v)) {
          const step = Math.max(1, Math.floor(v.length / 4000));
          for (let i = 0; i < v.length; i += step) visit(v[i]);
          return;
        }
        if (typeof v === 'object') for (const k of Object.keys(v)) visit(v[k]);
      };
      const entries = m.data instanceof Map ? [...m.data.entries()] : Object.entries(m.data);
      for (const [, col] of entries) visit(col);
      out[m.name.slice(6)] = n ? String(h) + '/' + n : null;
    }
  }
  return out;
}"""

SET_ROI_JS = """([name, x, y, w, h]) => {
  for (const doc of Bokeh.documents) {
    const roi = doc.get_model_by_name('roi: ' + name);
    if (roi) { roi.data = {x: [x], y: [y], width: [w], height: [h]}; return true; }
  }
  return false;
}"""


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def demo():
    """The demo's dashboard on an embedded simulator, served on a free port."""
    from streamz import Stream

    from kb_streams.simulate.embedded import embedded_simulator
    from kb_streams.web.demo import demo_dashboard

    with embedded_simulator(pulses=4, rate=10, pool_size=5, trains_per_step=2) as server:
        source = Stream.from_karabo_bridge(server.endpoint, timeout=5)
        dashboard, curve = demo_dashboard(source)
        dashboard.refresh = 0.2
        url = dashboard.serve(port=0)
        source.start()
        try:
            yield dashboard, curve, url
        finally:
            dashboard.stop()
            source.stop()
            source.join(10)


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1000, "height": 1500})
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url, wait_until="load", timeout=30_000)
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=30_000)
    return page, problems, requests


def test_demo_page_loads_clean_and_every_plot_updates(browser, demo):
    dashboard, _, url = demo
    page, problems, requests = _open(browser, url)
    try:
        plots = set(dashboard.plots)

        def hashes():
            return page.evaluate(HASH_JS)

        wait_until(lambda: set(hashes()) == plots and all(hashes().values()), 30,
                   "every plot to show data")
        first = hashes()
        assert wait_for(lambda: all(hashes()[name] != first[name] for name in plots), 30), (
            f"plots that did not update: {[n for n in plots if hashes()[n] == first[n]]}")
        status = page.locator(".kb-fresh").first
        assert status.get_attribute("data-fresh") == "1"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        assert not problems, problems
        host = url.rstrip("/")
        assert all(r.startswith(host) or r.startswith(("data:", "blob:")) for r in requests), (
            [r for r in requests if not r.startswith(host)])
    finally:
        page.close()


def test_roi_drawn_in_the_browser_reaches_the_graph(browser, demo):
    dashboard, _, url = demo
    roi = dashboard.parameters["ROI"]
    page, problems, _ = _open(browser, url)
    try:
        # a box of 40 x 20 pixels centred on fast_scan 60, slow_scan 300, as BoxEditTool leaves it
        version = roi.version
        assert page.evaluate(SET_ROI_JS, ["ROI", 60.0, 300.0, 40.0, 20.0])
        assert roi.wait_changed(version, 10), "the ROI change did not reach the server"
        assert roi.value == ((290, 310), (40, 80))
        assert roi.changes[-1].by.startswith("browser session")
        assert not problems, problems
    finally:
        page.close()
        roi.set(roi.default)


def test_roi_changes_what_the_running_graph_computes(browser):
    """A graph reading the ROI per item computes with the box drawn in the browser (and the
    page draws every kind of plot without an error)."""
    from streamz import Stream

    from kb_streams.web import Dashboard

    dashboard = Dashboard("ROI test", refresh=0.2)
    roi = dashboard.roi("ROI", ((0, 4), (0, 4)), image="camera")
    source = Stream()
    source.to_dashboard("camera", kind="image", dashboard=dashboard)
    results = source.map(lambda image: (roi.value, float(image[roi.slices].sum()))).sink_to_list()
    source.map(lambda image: image.mean(axis=0)).to_dashboard("profile", kind="curve",
                                                              dashboard=dashboard)
    source.map(np.ravel).to_dashboard("pixels", kind="histogram", dashboard=dashboard)
    source.map(np.mean).to_dashboard("mean", kind="scalar", dashboard=dashboard)
    image = np.ones((64, 64))
    url = dashboard.serve(port=0)
    page, problems, _ = _open(browser, url)
    try:
        source.emit(image)
        assert results[-1] == (((0, 4), (0, 4)), 16.0)
        wait_until(lambda: all(page.evaluate(HASH_JS).get(name) for name in dashboard.plots),
                   15, "every kind of plot to show data")
        version = roi.version
        assert page.evaluate(SET_ROI_JS, ["ROI", 20.0, 10.0, 10.0, 4.0])
        assert roi.wait_changed(version, 10)
        source.emit(image)  # the next train uses the new ROI
        assert results[-1] == (((8, 12), (15, 25)), 40.0)
        assert not problems, problems
        assert dashboard.sessions == 1
        page.close()
        # a closed page stops costing the server: its session ends within seconds
        wait_until(lambda: dashboard.sessions == 0, 20, "the closed page's session to end")
    finally:
        page.close()
        dashboard.stop()


def test_reset_and_pause_buttons_act_on_the_running_graph(browser, demo):
    dashboard, curve, url = demo
    page, problems, _ = _open(browser, url)
    try:
        wait_until(lambda: curve.result is not None and int(curve.result["count"].sum()) >= 8,
                   30, "the curve to fill in")
        filled = curve.trains
        # a DOM click event on the button: no waiting for the renderer to scroll and settle,
        # which a busy machine's starved renderer may not do for long
        page.get_by_role("button", name="Reset Pump-probe ratio by delay").dispatch_event("click")
        # the curve starts again from the reset: fewer trains in it than before
        wait_until(lambda: curve.trains > filled
                   and int(curve.result["count"].sum()) < filled, 15, "the curve to restart")
        page.get_by_role("button", name="Pause").dispatch_event("click")
        wait_until(lambda: dashboard.paused.value, 10, "pause to reach the server")
        paused_at = curve.trains
        assert wait_for(lambda: curve.trains > paused_at + 1, 1.0) is False
        page.get_by_role("button", name="Resume").dispatch_event("click")
        wait_until(lambda: not dashboard.paused.value and curve.trains > paused_at + 1, 15,
                   "the analysis to resume")
        assert [c.by.split()[0] for c in dashboard.paused.changes][-2:] == ["browser", "browser"]
        assert not problems, problems
    finally:
        page.close()
        dashboard.paused.set(False)
