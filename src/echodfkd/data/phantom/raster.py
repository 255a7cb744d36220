"""Fast polygon rasterisation with the pixel-centre rule, vectorised over frames."""

from __future__ import annotations

import numpy as np

_MAX_CROSSINGS = 6  # per row; a row crossing the outline more often falls back to the parity path


def _crossings(polys: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (frame, row, x) where a polygon edge crosses the horizontal line through a row's pixel centres."""
    x0, y0 = polys[..., 0], polys[..., 1]
    x1, y1 = np.roll(x0, -1, axis=1), np.roll(y0, -1, axis=1)
    # Edge covers rows r with lo <= r < hi (half-open: a vertex is counted once).
    first = np.clip(np.ceil(np.minimum(y0, y1)), 0, height).astype(np.int64)
    last = np.clip(np.ceil(np.maximum(y0, y1)), 0, height).astype(np.int64)
    counts = (last - first).ravel()
    total = int(counts.sum())
    edge = np.repeat(np.arange(counts.size), counts)
    offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = first.ravel()[edge] + offset
    frame = edge // polys.shape[1]
    ya, yb, xa, xb = y0.ravel()[edge], y1.ravel()[edge], x0.ravel()[edge], x1.ravel()[edge]
    xc = xa + (rows - ya) * (xb - xa) / (yb - ya)
    return frame, rows, xc


def fill_polygons(polys: np.ndarray, height: int, width: int) -> np.ndarray:
    """Fill one closed polygon per frame: polys (T, N, 2) pixel coords (x, y) -> bool (T, H, W).

    A pixel (row r, column c) is inside when its centre (x=c, y=r) is inside the polygon (even-odd rule,
    half-open in y). This is the convention of skimage.draw.polygon (rows=y, cols=x) used by EchoNet,
    computed for all frames at once instead of one call per frame.
    """
    polys = np.asarray(polys, dtype=np.float64)
    if polys.ndim == 2:
        return fill_polygons(polys[None], height, width)[0]
    t = polys.shape[0]
    frame, rows, xc = _crossings(polys, height)
    key = frame * height + rows
    # One float sort key: row group first, then x inside the row (x is bounded by the clip below).
    xs = np.clip(xc, -2.0 * width, 3.0 * width)
    order = np.argsort(key * (8.0 * width) + (xs + 2.0 * width))
    key, xc = key[order], xs[order]
    # A crossing at xc flips every column strictly to its right: span starts are floor(xc) + 1.
    col = np.floor(xc) + 1
    starts = np.r_[0, np.flatnonzero(np.diff(key)) + 1]
    rank = np.arange(key.size) - np.repeat(starts, np.diff(np.r_[starts, key.size]))
    if key.size and rank.max() >= _MAX_CROSSINGS:
        return _fill_parity(key, col, t, height, width)
    pairs = (int(rank.max()) + 2) // 2 if key.size else 0
    bounds = np.full((t * height, 2 * pairs), 32767, dtype=np.int16)
    bounds[key, rank] = np.clip(col, -1, width).astype(np.int16)
    cols = np.arange(width, dtype=np.int16)
    bounds = bounds.reshape(t, height, 2 * pairs, 1)
    inside = np.zeros((t, height, width), dtype=bool)
    for j in range(0, 2 * pairs, 2):
        inside |= (cols >= bounds[:, :, j]) & (cols < bounds[:, :, j + 1])
    return inside


def _fill_parity(key: np.ndarray, col: np.ndarray, t: int, height: int, width: int) -> np.ndarray:
    """General even-odd fill by cumulative crossing counts (for outlines that fold many times)."""
    c = np.clip(col, 0, width).astype(np.int64)
    counts = np.bincount(key * (width + 1) + c, minlength=t * height * (width + 1)).astype(np.uint8)
    counts = counts.reshape(t, height, width + 1)
    return (np.cumsum(counts, axis=2, dtype=np.uint8)[..., :width] & 1).astype(bool)


def polygon_area(polys: np.ndarray) -> np.ndarray:
    """Shoelace area of closed polygons (..., N, 2)."""
    x, y = polys[..., 0], polys[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y, axis=-1))
