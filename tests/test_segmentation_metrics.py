"""Dice/IoU reductions, binarisation and bootstrap intervals on masks whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echodfkd.errors import EchoDFKDError
from echodfkd.evaluate.segmentation import bootstrap_ci, summarize_by_phase, summarize_overlap
from echodfkd.measures.masks import MaskError, binarize, dice, iou, overlap_counts


def _square(size, top, left, side):
    m = np.zeros((size, size), bool)
    m[top:top + side, left:left + side] = True
    return m


def test_binarize_convention():
    soft = np.array([[0, 127, 128, 255]], np.uint8)
    assert binarize(soft, 0.5).tolist() == [[False, False, True, True]]      # 127.5: logit > 0
    assert binarize(soft, 80 / 255).tolist() == [[False, True, True, True]]
    assert binarize(soft, 0.0).all()
    assert binarize(soft > 0, 0.9).tolist() == [[False, True, True, True]]   # bool passes through
    with pytest.raises(MaskError, match="threshold"):
        binarize(soft, 80)


def test_dice_and_iou_of_known_squares():
    a = _square(10, 0, 0, 4)      # 16 px
    b = _square(10, 2, 0, 4)      # 16 px, overlap 8 px, union 24
    assert dice(a, b) == pytest.approx(2 * 8 / 32)
    assert iou(a, b) == pytest.approx(8 / 24)
    assert dice(a, a) == 1.0 and iou(a, ~a) == 0.0


def test_empty_vs_empty_is_one():
    e = np.zeros((5, 5), bool)
    assert dice(e, e) == 1.0 and iou(e, e) == 1.0
    assert dice(e, e, "pooled") == 1.0 and iou(e, e, "pooled") == 1.0
    assert dice(e, _square(5, 0, 0, 2)) == 0.0     # empty vs non-empty is 0


def test_pooled_and_mean_differ_on_a_crafted_case():
    # item 0: a big mask predicted perfectly (100 px); item 1: a tiny mask missed completely (1 px)
    big = _square(20, 0, 0, 10)
    tiny = _square(20, 15, 15, 1)
    pred = np.stack([big, np.zeros_like(tiny)])
    true = np.stack([big, tiny])
    assert dice(pred, true, "none").tolist() == [1.0, 0.0]
    assert dice(pred, true, "mean") == pytest.approx(0.5)
    assert dice(pred, true, "pooled") == pytest.approx(2 * 100 / (101 + 100))   # EchoNet's 2ΣI/(ΣU+ΣI)
    assert iou(pred, true, "mean") == pytest.approx(0.5)
    assert iou(pred, true, "pooled") == pytest.approx(100 / 101)
    with pytest.raises(MaskError, match="reduction"):
        dice(pred, true, "median")


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(EchoDFKDError, match="shapes differ"):
        overlap_counts(np.zeros((4, 4), bool), np.zeros((5, 5), bool))


def test_bootstrap_interval():
    vals = np.r_[np.zeros(50), np.ones(50)]
    lo, hi = bootstrap_ci(vals, "mean", n=2000, seed=1)
    assert lo < 0.5 < hi and 0.38 < lo and hi < 0.62          # 90 % CI of a mean of 100 Bernoulli(0.5)
    assert bootstrap_ci(np.full(7, 0.8), "mean", n=100) == (pytest.approx(0.8), pytest.approx(0.8))
    assert np.isnan(bootstrap_ci(np.array([]), "mean", n=10)[0])
    counts = np.array([[8, 24]] * 20)                          # every item has Dice 0.5, IoU 1/3
    lo, hi = bootstrap_ci(counts, "pooled_dice", n=200)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    assert bootstrap_ci(vals, "mean", n=500, seed=3) == bootstrap_ci(vals, "mean", n=500, seed=3)


def test_summaries_per_video_and_pooled():
    rows = pd.DataFrame({"FileName": ["a", "a", "b", "b"], "Phase": ["ED", "ES", "ED", "ES"],
                         "I": [100, 0, 8, 8], "U": [100, 1, 24, 24]})
    s = summarize_by_phase(rows, n_boot=200)
    # per video: a = mean(1, 0) = 0.5, b = 0.5 -> 0.5. pooled: 2*116/(149+116)
    assert s["overall"]["dice_per_video_mean"] == pytest.approx(0.5)
    assert s["overall"]["dice_pooled"] == pytest.approx(232 / 265)
    assert s["ED"]["dice_per_video_mean"] == pytest.approx(0.75)
    assert s["ES"]["iou_per_video_mean"] == pytest.approx((0 + 1 / 3) / 2)
    assert s["ED"]["n_videos"] == 2 and s["overall"]["n_frames"] == 4
    lo, hi = s["overall"]["dice_pooled_ci90"]
    assert lo <= s["overall"]["dice_pooled"] <= hi
    assert summarize_overlap(rows.iloc[:0]) == {"n_videos": 0, "n_frames": 0}
