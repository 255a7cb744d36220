"""The per-frame post-processing the batched scheduler runs (`stream.postprocess`): the largest region."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from echodfkd.stream.postprocess import keep_largest_component


def _reference(soft: np.ndarray, threshold: float) -> np.ndarray:
    """The largest 8-connected region by scipy (ties: the region met first in raster order)."""
    labels, count = ndimage.label(soft >= threshold * 255.0, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return soft
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.where(labels == int(np.argmax(sizes)), soft, 0).astype(np.uint8)


def test_largest_component_equals_scipy_including_ties():
    rng = np.random.default_rng(0)
    ties = several = 0
    for k in range(600):
        h, w = (int(v) for v in rng.integers(3, 30, 2))
        soft = ((rng.random((h, w)) < rng.uniform(0.05, 0.6)) * rng.integers(100, 256)).astype(np.uint8)
        t = float(rng.uniform(0.2, 0.8))
        ref = _reference(soft, t)
        got = keep_largest_component(soft, t)
        assert got.dtype == np.uint8 and np.array_equal(got, ref), k
        labels, count = ndimage.label(soft >= t * 255.0, structure=np.ones((3, 3), dtype=bool))
        sizes = np.bincount(labels.ravel())[1:]
        several += count > 1
        ties += count > 1 and int((sizes == sizes.max()).sum()) > 1
    assert several > 100 and ties > 10  # the cases that matter were drawn


def test_largest_component_diagonal_touch_is_one_region_and_blank_is_kept():
    soft = np.zeros((6, 6), np.uint8)
    soft[0, 0] = soft[1, 1] = 200  # 8-connected: one region of two pixels
    soft[4, 4] = 255
    out = keep_largest_component(soft, 0.5)
    assert out[0, 0] == out[1, 1] == 200 and out[4, 4] == 0
    blank = np.zeros((5, 5), np.uint8)
    assert keep_largest_component(blank, 0.5) is blank
