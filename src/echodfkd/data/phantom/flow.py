"""Tissue motion of a clip: where each pixel's tissue was in the first frame, so speckle moves with it.

The displacement of the heart's outline points since frame 0 is spread over the image with Gaussian
weights (plus a weight for "no motion", so tissue far from the heart stays still), on a coarse grid that
is interpolated to full size when each frame is rendered.
"""

from __future__ import annotations

import cv2
import numpy as np

from echodfkd.data.phantom.anatomy import HeartFrames

GRID = 16          # coarse grid points per side
MAX_POINTS = 160   # outline points used (evenly subsampled)


def outline_points(heart: HeartFrames) -> np.ndarray:
    """Points (T, P, 2) of every moving outline (LV/RV/atria, inner and outer), subsampled."""
    pts = np.concatenate([heart.lv, heart.lv_outer, heart.rv, heart.rv_outer, heart.la_outer, heart.ra_outer],
                         axis=1)
    step = max(1, pts.shape[1] // MAX_POINTS)
    return pts[:, ::step]


def coarse_displacement(heart: HeartFrames, size: int, sigma: float = 0.09) -> np.ndarray:
    """Displacement (T, GRID, GRID, 2) in pixels of the tissue now at each grid point since frame 0."""
    pts = outline_points(heart).astype(np.float32)
    disp = pts - pts[:1]
    g = (np.arange(GRID, dtype=np.float32) + 0.5) * size / GRID - 0.5
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel()], -1)  # (G, 2)
    inv = np.float32(-1.0 / (2.0 * (sigma * size) ** 2))
    # Squared distances (T, G, P) by expansion: |g|^2 + |p|^2 - 2 g.p (one matrix product for all frames).
    d2 = (grid ** 2).sum(-1)[None, :, None] + (pts ** 2).sum(-1)[:, None, :] - 2.0 * np.matmul(grid, pts.transpose(0, 2, 1))
    w = np.exp(np.maximum(d2, 0.0) * inv)
    norm = w.sum(-1, keepdims=True) + np.float32(0.3)  # the "still" prior
    out = np.matmul(w, disp) / norm
    return out.reshape(pts.shape[0], GRID, GRID, 2)


def remap_grids(coarse: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame cv2.remap maps (T, H, W) x and y: sample frame-0 positions (pixel minus displacement)."""
    base = np.arange(size, dtype=np.float32)
    bx, by = np.meshgrid(base, base)
    t_len = coarse.shape[0]
    mx = np.empty((t_len, size, size), dtype=np.float32)
    my = np.empty_like(mx)
    for t in range(t_len):
        full = cv2.resize(coarse[t], (size, size), interpolation=cv2.INTER_LINEAR)
        mx[t] = bx - full[..., 0]
        my[t] = by - full[..., 1]
    return mx, my
