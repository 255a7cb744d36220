"""Draw the echogenicity (reflectivity) map of each frame from the heart outlines.

Tissue is bright, blood is almost black; the pericardium, valve leaflets and annuli are the strongest
reflectors. Drawing uses OpenCV with 1/16-pixel vertex precision; speckle and blur come later (imaging).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from echodfkd.data.phantom.anatomy import N_SIDE, HeartFrames

_SHIFT = 4
_SCALE = float(1 << _SHIFT)


@dataclass(frozen=True)
class Echogenicity:
    """Reflectivity levels (0-255) of each tissue class for one clip."""

    blood: int
    myocardium: int
    septum: int
    rv_wall: int
    atrial_wall: int
    pericardium: int
    valve: int
    papillary: int


def sample_echogenicity(rng: np.random.Generator) -> Echogenicity:
    """Draw tissue brightness for one patient/machine."""
    myo = int(rng.uniform(65, 110))
    return Echogenicity(
        blood=int(rng.uniform(2, 6)),
        myocardium=myo,
        septum=int(min(250, myo * rng.uniform(1.15, 1.5))),
        rv_wall=int(myo * rng.uniform(0.7, 0.95)),
        atrial_wall=int(myo * rng.uniform(0.35, 0.6)),
        pericardium=int(rng.uniform(215, 255)),
        valve=int(rng.uniform(150, 230)),
        papillary=int(myo * rng.uniform(0.55, 0.85)),
    )


def background_texture(rng: np.random.Generator, size: int, level: float) -> np.ndarray:
    """Static reflectivity of the tissue around the heart: smooth blotches at about `level` (0-255)."""
    coarse = rng.lognormal(0.0, 0.6, size=(5, 5)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(rng.lognormal(0.0, 0.5, size=(16, 16)).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_LINEAR)
    return np.clip(level * smooth * fine, 0, 255).astype(np.uint8)


def _pts(poly: np.ndarray) -> np.ndarray:
    return np.round(poly * _SCALE).astype(np.int32)


def draw_scene(heart: HeartFrames, levels: Echogenicity, background: np.ndarray) -> np.ndarray:
    """Reflectivity frames (T, H, W) uint8 for every frame of the heart outlines."""
    t_len = heart.lv.shape[0]
    size = background.shape[0]
    out = np.empty((t_len,) + background.shape, dtype=np.uint8)
    # Integer (1/16 px) vertices for every structure, converted once for the whole clip.
    lv, lv_o = _pts(heart.lv), _pts(heart.lv_outer)
    rv, rv_o = _pts(heart.rv), _pts(heart.rv_outer)
    la, la_o = _pts(heart.la), _pts(heart.la_outer)
    ra, ra_o = _pts(heart.ra), _pts(heart.ra_outer)
    septal_wall = np.concatenate([lv_o[:, 1:N_SIDE + 1], lv[:, N_SIDE - 1::-1]], axis=1)
    leaflets = _pts(heart.leaflets)
    pap = None if heart.papillary is None else _pts(heart.papillary)
    peri = [_pts(p) for p in heart.pericardium]
    peri_thick = max(1, int(round(1.6 * size / 112)))
    leaflet_thick = max(1, int(round(1.5 * size / 112)))
    hinge_r = int(round(0.9 * size / 112 * _SCALE))
    crux = _pts(heart.crux[:, 0])
    crux_r = int(round(2.2 * size / 112 * _SCALE))
    line = cv2.LINE_AA
    for t in range(t_len):
        img = out[t]
        img[:] = background
        cv2.fillPoly(img, [rv_o[t]], levels.rv_wall, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(img, [la_o[t]], levels.atrial_wall, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(img, [ra_o[t]], levels.atrial_wall, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(img, [lv_o[t]], levels.myocardium, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(img, [septal_wall[t]], levels.septum, cv2.LINE_8, _SHIFT)
        cv2.polylines(img, [p[t] for p in peri], False, levels.pericardium, peri_thick, cv2.LINE_8, _SHIFT)
        for cavity in (lv, rv, la, ra):
            cv2.fillPoly(img, [cavity[t]], levels.blood, line, _SHIFT)
        if pap is not None:
            cv2.fillPoly(img, [pap[t]], levels.papillary, line, _SHIFT)
        cv2.polylines(img, list(leaflets[t]), False, levels.valve, leaflet_thick, line, _SHIFT)
        cv2.circle(img, (int(crux[t, 0]), int(crux[t, 1])), crux_r, levels.pericardium, -1, line, _SHIFT)
        for hinge in leaflets[t, :, 0]:
            cv2.circle(img, (int(hinge[0]), int(hinge[1])), hinge_r, levels.pericardium, -1, line, _SHIFT)
    return out
