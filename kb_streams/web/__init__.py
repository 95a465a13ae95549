"""A live browser dashboard for a streamz graph: plots that pull, controls that push back.

Needs the ``web`` extra (Bokeh): ``pip install 'kb-streams[web]'``. The graph writes each item
into its plot's slot and goes on; a web process of its own (Bokeh's server, ended with this
process) pulls the newest of each plot for the browser sessions. Every script and style is
served by that process (no CDN).

Examples
--------
>>> from streamz import Stream
>>> from kb_streams.web import Dashboard
>>> dashboard = Dashboard("XGM")
>>> source = Stream()
>>> _ = source.to_dashboard("pulse energy", kind="scalar", dashboard=dashboard)
>>> url = dashboard.serve(port=8050)    # doctest: +SKIP
"""

from __future__ import annotations

try:
    import bokeh  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    from ..errors import MissingExtraError

    raise MissingExtraError(
        "the kb_streams dashboard needs Bokeh: pip install 'kb-streams[web]'") from exc

from .dashboard import Dashboard, Plot, default_dashboard
from .params import ROI, Parameter
from .sink import to_dashboard

__all__ = ["Dashboard", "Plot", "Parameter", "ROI", "default_dashboard", "to_dashboard"]
