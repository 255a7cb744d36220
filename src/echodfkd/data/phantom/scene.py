"""Draw the echogenicity (reflectivity) map of each frame from the heart outlines.

The whole sector is tissue: the chambers are dark holes cut into it, as in a real apical view, where the
myocardium merges into the pericardium, lung and liver around it. The septum and the annuli are bright,
the pericardium is the strongest reflector; trabeculae and papillary muscles protrude into the LV (they
belong to the cavity in the ground truth, as in human tracings), a moderator band crosses the RV apex,
and the blood pools hold a faint haze. Drawing uses OpenCV with 1/16-pixel vertex precision; speckle and
blur come later (imaging).
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
    surround: float        # tissue around the heart, relative to the myocardium
    trabeculae: int        # number of trabecular strands along the LV wall (0 = smooth)
    haze: float            # blood-pool haze (side lobes, clutter), relative to the myocardium


def sample_echogenicity(rng: np.random.Generator) -> Echogenicity:
    """Draw tissue brightness for one patient/machine."""
    myo = int(rng.uniform(60, 120))
    return Echogenicity(
        blood=int(rng.uniform(1, 6)),
        myocardium=myo,
        septum=int(min(250, myo * rng.uniform(1.2, 1.8))),
        rv_wall=int(myo * rng.uniform(0.8, 1.1)),
        atrial_wall=int(myo * rng.uniform(0.7, 1.1)),
        pericardium=int(rng.uniform(200, 255)),
        valve=int(rng.uniform(140, 230)),
        papillary=int(myo * rng.uniform(0.7, 1.1)),
        surround=float(rng.uniform(0.2, 0.65)),
        trabeculae=int(rng.integers(0, 9)),
        haze=float(rng.uniform(0.0, 0.05)),
    )


def background_texture(rng: np.random.Generator, size: int, level: float) -> np.ndarray:
    """Static reflectivity of the tissue around the heart: blotches at about `level` (0-255), darker lung
    at the upper sides and brighter far field (liver, spine) with some probability."""
    coarse = rng.lognormal(0.0, 0.55, size=(6, 6)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(rng.lognormal(0.0, 0.45, size=(18, 18)).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_LINEAR)
    px = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(px, px)
    shade = np.ones_like(x)
    for side in (-1.0, 1.0):  # lung over the upper flanks of the heart
        if rng.random() < 0.5:
            cx, cy, r = 0.5 + side * rng.uniform(0.3, 0.45), rng.uniform(0.15, 0.45), rng.uniform(0.12, 0.25)
            shade *= 1.0 - rng.uniform(0.5, 0.9) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r ** 2))
    shade *= 1.0 + rng.uniform(0.0, 0.8) * np.clip((y - 0.75) / 0.25, 0, 1)  # far field
    return np.clip(level * smooth * fine * shade, 0, 255).astype(np.uint8)


def _pts(poly: np.ndarray) -> np.ndarray:
    return np.round(poly * _SCALE).astype(np.int32)


def _inward(poly: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Unit vectors (T, K, 2) from outline points towards the outline's centroid."""
    d = poly.mean(axis=1, keepdims=True) - poly[:, index]
    return d / (np.linalg.norm(d, axis=-1, keepdims=True) + 1e-9)


def trabeculae(heart: HeartFrames, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Strands (T, K, 2, 2) from the LV endocardium into the cavity, in the apical two thirds, moving with it."""
    if count <= 0:
        return np.zeros((heart.lv.shape[0], 0, 2, 2))
    n = heart.lv.shape[1]
    apex = N_SIDE - 1
    lo, hi = max(1, apex - int(0.7 * N_SIDE)), min(n - 2, apex + int(0.7 * N_SIDE))
    index = np.sort(rng.choice(np.arange(lo, hi), size=min(count, hi - lo), replace=False))
    base = heart.lv[:, index]
    length = rng.uniform(1.0, 3.5, size=index.size)[None, :, None] * size / 112.0
    tip = base + _inward(heart.lv, index) * length
    return np.stack([base, tip], axis=2)


def draw_scene(heart: HeartFrames, levels: Echogenicity, background: np.ndarray,
               strands: np.ndarray | None = None, haze: np.ndarray | None = None) -> np.ndarray:
    """Reflectivity frames (T, H, W) uint8 for every frame of the heart outlines.

    `background` is the tissue around the heart, `strands` the trabeculae (see `trabeculae`), `haze` a
    static level (H, W) uint8 added to the blood inside the chambers.
    """
    t_len = heart.lv.shape[0]
    size = background.shape[0]
    out = np.empty((t_len,) + background.shape, dtype=np.uint8)
    pool = np.empty_like(background)
    lv, lv_o = _pts(heart.lv), _pts(heart.lv_outer)
    rv, rv_o = _pts(heart.rv), _pts(heart.rv_outer)
    la, la_o = _pts(heart.la), _pts(heart.la_outer)
    ra, ra_o = _pts(heart.ra), _pts(heart.ra_outer)
    septal_wall = np.concatenate([lv_o[:, 1:N_SIDE + 1], lv[:, N_SIDE - 1::-1]], axis=1)
    leaflets = _pts(heart.leaflets)
    pap = None if heart.papillary is None else _pts(heart.papillary)
    peri = [_pts(p) for p in heart.pericardium]
    trab = None if strands is None or strands.shape[1] == 0 else _pts(strands)
    k = size / 112.0
    peri_thick = max(1, int(round(2.2 * k)))
    leaflet_thick = max(1, int(round(1.3 * k)))
    strand_thick = max(1, int(round(1.0 * k)))
    hinge_r = int(round(1.1 * k * _SCALE))
    crux = _pts(heart.crux[:, 0])
    crux_r = int(round(2.2 * k * _SCALE))
    # Moderator band: across the RV, a third of the way from its apex.
    n_rv = heart.rv.shape[1] // 2
    band = _pts(np.stack([heart.rv[:, n_rv // 3], heart.rv[:, -1 - n_rv // 3]], axis=1))
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
        if haze is None:
            for cavity in (lv, rv, la, ra):
                cv2.fillPoly(img, [cavity[t]], levels.blood, line, _SHIFT)
        else:
            pool[:] = 0
            for cavity in (lv, rv, la, ra):
                cv2.fillPoly(pool, [cavity[t]], 1, cv2.LINE_8, _SHIFT)
            np.copyto(img, haze, where=pool.astype(bool))
        if pap is not None:
            cv2.fillPoly(img, [pap[t]], levels.papillary, line, _SHIFT)
        if trab is not None:
            cv2.polylines(img, list(trab[t]), False, levels.papillary, strand_thick, line, _SHIFT)
        cv2.polylines(img, [band[t]], False, levels.rv_wall, strand_thick, line, _SHIFT)
        cv2.polylines(img, list(leaflets[t]), False, levels.valve, leaflet_thick, line, _SHIFT)
        cv2.circle(img, (int(crux[t, 0]), int(crux[t, 1])), crux_r, levels.pericardium, -1, line, _SHIFT)
        for hinge in leaflets[t, :, 0]:
            cv2.circle(img, (int(hinge[0]), int(hinge[1])), hinge_r, levels.pericardium, -1, line, _SHIFT)
    return out


def cavity_haze(heart: HeartFrames, levels: Echogenicity, size: int, rng: np.random.Generator) -> np.ndarray:
    """Blood level with haze (H, W) uint8: smooth blotches over the blood level, strongest near the apex."""
    blot = cv2.resize(rng.lognormal(0.0, 0.7, size=(7, 7)).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_CUBIC)
    apex = heart.lv[0, N_SIDE - 1]
    yy = np.arange(size, dtype=np.float32)[:, None]
    near = np.exp(-np.clip(yy - apex[1], 0, None) / (0.25 * size))
    level = levels.blood + levels.haze * levels.myocardium * np.clip(blot, 0, 2) * (0.4 + 0.6 * near)
    return np.clip(level, 0, 255).astype(np.uint8)
