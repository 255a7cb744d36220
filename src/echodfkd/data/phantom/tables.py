"""Acquisition statistics of the real EchoNet-Dynamic FileList, embedded as data.

Derived once from the public EchoNet-Dynamic FileList.csv (10,030 clips): the FPS histogram and the
quantiles of clip duration (NumberOfFrames / FPS, seconds). The package never reads that file at run time.
"""

from __future__ import annotations

import numpy as np

# FPS -> number of clips in EchoNet-Dynamic (7,959 of 10,030 at 50 fps).
FPS_COUNTS: dict[int, int] = {
    18: 1, 22: 3, 24: 6, 26: 9, 27: 10, 28: 12, 29: 3, 30: 41, 31: 8, 33: 8, 34: 2, 35: 7, 36: 1, 37: 8,
    38: 5, 39: 6, 40: 23, 41: 2, 42: 1, 43: 100, 44: 1, 45: 4, 46: 101, 47: 253, 48: 14, 49: 9,
    50: 7959, 51: 93, 52: 124, 53: 165, 54: 70, 55: 92, 56: 51, 57: 105, 58: 90, 59: 90, 60: 23, 61: 43,
    62: 88, 63: 13, 64: 86, 65: 19, 66: 2, 67: 9, 68: 49, 69: 1, 70: 15, 71: 4, 72: 33, 73: 52, 74: 2,
    75: 4, 76: 10, 77: 1, 78: 3, 80: 25, 81: 1, 82: 3, 83: 2, 84: 10, 85: 1, 87: 1, 88: 6, 89: 5, 90: 1,
    93: 7, 99: 6, 100: 1, 102: 1, 104: 7, 106: 13, 116: 2, 117: 1, 120: 1, 123: 1, 138: 1,
}

# Percentile -> clip duration in seconds (the 100th percentile, 20 s, is one outlier; we stop at 99).
DURATION_QUANTILES: dict[float, float] = {
    0: 0.72, 1: 1.586, 2: 1.899, 5: 2.18, 10: 2.42, 20: 2.727, 30: 2.966, 40: 3.18, 50: 3.38, 60: 3.58,
    70: 3.82, 80: 4.04, 90: 4.44, 95: 4.88, 98: 5.42, 99: 6.234,
}

# EchoNet-Dynamic split sizes 7465 / 1288 / 1277.
SPLIT_FRACTIONS: dict[str, float] = {"TRAIN": 7465 / 10030, "VAL": 1288 / 10030, "TEST": 1277 / 10030}


def draw_fps(rng: np.random.Generator, max_fps: float | None = None) -> int:
    """Draw a frame rate from the EchoNet-Dynamic histogram (optionally capped)."""
    values = np.array(list(FPS_COUNTS), dtype=np.int64)
    weights = np.array(list(FPS_COUNTS.values()), dtype=np.float64)
    if max_fps is not None:
        keep = values <= max_fps
        if keep.any():
            values, weights = values[keep], weights[keep]
        else:
            return int(values.min())
    return int(rng.choice(values, p=weights / weights.sum()))


def draw_duration(rng: np.random.Generator) -> float:
    """Draw a clip duration (seconds) by inverting the EchoNet-Dynamic duration quantiles."""
    q = np.array(list(DURATION_QUANTILES), dtype=np.float64) / 100.0
    d = np.array(list(DURATION_QUANTILES.values()), dtype=np.float64)
    return float(np.interp(rng.uniform(0.0, q[-1]), q, d))
