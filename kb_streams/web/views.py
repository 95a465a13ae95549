"""What each kind of plot draws, as plain columns: the server-side reduction of an item.

Pure numpy, no Bokeh: turning the newest item of a slot into the columns a plot shows (an image
reduced to about screen size, a curve with error bars, a histogram's bars) happens here, once per
new item however many browsers look. The graph never waits for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["KINDS", "image_columns", "curve_columns", "scalar_value", "histogram_columns",
           "tile_modules", "downsample", "colour_image", "colour_indices", "NO_DATA"]

#: The colour index of a pixel without data (NaN: a gap between modules); 1-255 are the scale.
NO_DATA = 0

#: The kinds of plot :meth:`kb_streams.web.Dashboard.add` knows.
KINDS = ("image", "curve", "scalar", "histogram")


def _values(item: Any) -> np.ndarray:
    """The numbers of an array, a DataArray or anything numpy takes."""
    return np.asarray(getattr(item, "values", item))


def downsample(image: np.ndarray, max_size: int = 512) -> np.ndarray:
    """Block-average a 2D image so that neither side exceeds ``max_size`` (as float32).

    Examples
    --------
    >>> downsample(np.ones((1024, 1024), np.uint16)).shape
    (512, 512)
    >>> downsample(np.arange(6.0).reshape(2, 3), max_size=8).tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    factor = max(1, math.ceil(max(image.shape) / max_size))
    if factor == 1:
        return np.asarray(image, dtype=np.float32)
    rows, cols = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    # rows first: the image is read once, the pairs of columns are then added in cache
    # (strided views: ~15x faster than reshape(...).mean(axis=(1, 3)) for 1 Mpx)
    band = np.array(image[0:rows:factor, :cols], dtype=np.float32)
    for i in range(1, factor):
        band += image[i:rows:factor, :cols]
    out = band[:, 0::factor].copy()
    for j in range(1, factor):
        out += band[:, j::factor]
    out *= np.float32(1.0 / factor**2)
    return out


def tile_modules(modules: np.ndarray) -> np.ndarray:
    """Detector modules ``(module, slow_scan, fast_scan)`` side by side in a near-square grid.

    The rough picture of a detector whose geometry is unknown (e.g. 16 AGIPD modules of
    512 x 128 pixels become 2 rows of 8: 1024 x 1024 pixels).

    Examples
    --------
    >>> tile_modules(np.zeros((16, 512, 128))).shape
    (1024, 1024)
    """
    n, ss, fs = modules.shape
    cols = max(1, min(n, round(math.sqrt(n * ss / fs))))
    rows = math.ceil(n / cols)
    out = np.full((rows * ss, cols * fs), np.nan, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * ss:(r + 1) * ss, c * fs:(c + 1) * fs] = modules[i]
    return out


def colour_indices(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """``image`` as ``uint8`` colour indices: ``low`` and below 1, ``high`` and above 255,
    NaN :data:`NO_DATA` (one byte a pixel to send instead of four; the browser only maps).

    Examples
    --------
    >>> colour_indices(np.array([[0.0, 0.5, 1.0, np.nan]], np.float32), 0.0, 1.0).tolist()
    [[1, 128, 255, 0]]
    """
    scale = np.float32(254.0 / (high - low))
    scaled = np.multiply(image, scale, dtype=np.float32)
    scaled -= np.float32(low * scale - 1.5)  # 1 + (value - low) * scale, rounded to nearest
    np.clip(scaled, 1.0, 255.5, out=scaled)
    with np.errstate(invalid="ignore"):  # NaN casts to anything: overwritten just below
        indices = scaled.astype(np.uint8)
    indices[np.isnan(image)] = NO_DATA
    return indices


def image_columns(item: Any, *, geometry: Any = None, max_size: int = 512) -> dict[str, Any]:
    """An image item as Bokeh ``image`` columns, reduced to at most ``max_size`` a side.

    ``item`` is a 2D image (a camera, one module), or a stack of modules
    ``(module, slow_scan, fast_scan)``: assembled by ``geometry.position_modules`` (an
    extra_geom geometry) when given, else tiled (:func:`tile_modules`). The columns keep the
    full image's pixel coordinates (``dw``, ``dh``), so that what is drawn on the plot (an ROI)
    is in detector pixels. The graph's process does this much; the web process colours the
    image (:func:`colour_image`).

    Examples
    --------
    >>> cols = image_columns(np.arange(16.0).reshape(4, 4), max_size=2)
    >>> cols["image"][0].shape, cols["image"][0].dtype, cols["dw"], cols["dh"]
    ((2, 2), dtype('float32'), [4], [4])
    >>> class Geometry:  # what an extra_geom geometry offers: (image, centre)
    ...     def position_modules(self, data):
    ...         return np.concatenate(list(data)), (0, 0)
    >>> image_columns(np.ones((2, 4, 4)), geometry=Geometry())["dh"]
    [8]
    """
    data = _values(item)
    if data.ndim == 3:
        if geometry is not None:
            data = np.asarray(geometry.position_modules(data)[0])
        else:
            data = tile_modules(data)
    if data.ndim != 2:
        raise ValueError(f"an image plot needs a 2D image or (module, ss, fs) modules, "
                         f"not shape {data.shape}")
    return {"image": [downsample(data, max_size)], "x": [0], "y": [0],
            "dw": [data.shape[1]], "dh": [data.shape[0]]}


def colour_image(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """A screen-sized image as colour indices (:func:`colour_indices`) between ``low`` and
    ``high``, about its 1st and 99th percentiles: ``(indices, low, high)``.

    Examples
    --------
    >>> indices, low, high = colour_image(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8))
    >>> indices.dtype, int(indices.min()), int(indices.max()), round(low, 2), round(high, 2)
    (dtype('uint8'), 1, 255, 0.01, 0.99)
    """
    step = max(1, math.isqrt(image.size // 4096))  # limits from ~4096 pixels: ~0.1 ms
    sample = image[::step, ::step]
    finite = sample[np.isfinite(sample)]
    low, high = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    low, high = float(low), (float(high) if high > low else float(low) + 1.0)
    return colour_indices(image, low, high), low, high


def curve_columns(item: Any) -> dict[str, Any]:
    """A curve item as columns ``x``, ``y``, ``lower``, ``upper`` (error bars; NaN: none).

    ``item`` is a vector (x = position, or the coordinate of a DataArray's dimension), an
    ``(x, y)`` pair, or a binned result with ``mean`` and ``std`` (a
    :class:`~kb_streams.reduce.BinnedStats` result: error bars of ± std, empty bins left out).

    Examples
    --------
    >>> curve_columns(np.array([1.0, 3.0]))["y"].tolist()
    [1.0, 3.0]
    >>> from kb_streams.reduce import BinnedStats
    >>> curve = BinnedStats([0, 1, 2], dim='delay')
    >>> for delay, ratio in [(0.5, 1.0), (0.5, 1.2)]:
    ...     _ = curve.update(ratio, by=delay)
    >>> cols = curve_columns(curve.result())
    >>> cols["x"].tolist(), cols["lower"].round(2).tolist(), cols["upper"].round(2).tolist()
    ([0.5], [1.0], [1.2])
    """
    if hasattr(item, "data_vars") and "mean" in item.data_vars:
        mean = item["mean"]
        dim = mean.dims[0]
        x = np.asarray(item[dim].values, dtype=float)
        y = np.asarray(mean.values, dtype=float)
        std = (np.asarray(item["std"].values, dtype=float) if "std" in item.data_vars
               else np.full_like(y, np.nan))
        keep = np.isfinite(y)
        x, y, std = x[keep], y[keep], std[keep]
        return {"x": x, "y": y, "lower": y - std, "upper": y + std}
    if isinstance(item, tuple) and len(item) == 2:
        x, y = (np.asarray(_values(v), dtype=float).ravel() for v in item)
    else:
        y = np.asarray(_values(item), dtype=float).ravel()
        dims = getattr(item, "dims", ())
        coord = item.coords.get(dims[0]) if len(dims) == 1 else None
        x = (np.asarray(coord.values, dtype=float) if coord is not None
             else np.arange(y.size, dtype=float))
    nan = np.full_like(y, np.nan)
    return {"x": x, "y": y, "lower": nan, "upper": nan}


def scalar_value(item: Any) -> float:
    """A scalar item as a float (arrays: their mean; a ``(value, ...)`` tuple: its first part).

    Examples
    --------
    >>> scalar_value(np.array([1.0, 3.0])), scalar_value(2)
    (2.0, 2.0)
    """
    if isinstance(item, tuple) and item:
        item = item[0]
    values = _values(item)
    return float(values) if values.ndim == 0 else float(np.nanmean(values))


def histogram_columns(item: Any, *, bins: int | Sequence[float] = 50) -> dict[str, Any]:
    """A histogram item as bars ``left``, ``right``, ``top``.

    ``item`` is a :class:`~kb_streams.reduce.Histogram` result (``bin_low``/``bin_high``
    coordinates), a ``(counts, edges)`` pair, or values to histogram with ``bins``.

    Examples
    --------
    >>> histogram_columns(np.array([0.1, 0.2, 0.9]), bins=[0, 0.5, 1])["top"].tolist()
    [2.0, 1.0]
    """
    coords = getattr(item, "coords", {})
    if "bin_low" in coords and "bin_high" in coords:
        left, right = np.asarray(coords["bin_low"]), np.asarray(coords["bin_high"])
        top = np.asarray(item.values, dtype=float)
    elif isinstance(item, tuple) and len(item) == 2:
        top, edges = np.asarray(item[0], dtype=float), np.asarray(item[1], dtype=float)
        left, right = edges[:-1], edges[1:]
    else:
        values = _values(item).ravel()
        counts, edges = np.histogram(values[np.isfinite(values)], bins=bins)
        top, left, right = counts.astype(float), edges[:-1], edges[1:]
    return {"left": np.asarray(left, dtype=float), "right": np.asarray(right, dtype=float),
            "top": top}
