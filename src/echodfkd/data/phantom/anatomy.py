"""Apical-4-chamber heart geometry over time: LV, RV, atria, septum, valves, pericardium.

Shapes are built in a heart frame whose unit is the LV end-diastolic cavity length: `u` runs down the LV
long axis from the endocardial apex (u=0) to the mitral annulus (u=1), `v` points to the LV lateral wall
(image right); the septum and the RV lie at v < 0. A per-clip pose maps that frame onto the image (apex
at top, LV on the right). All outlines are vectorised over frames: arrays (T, N, 2) of pixel (x, y).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from echodfkd.data.phantom.raster import polygon_area

N_SIDE = 24  # points per LV wall, apex to annulus
_S = np.linspace(0.0, 1.0, N_SIDE) ** 1.6  # denser near the apex, where the outline bends most
_MODES = np.sin(np.pi * np.outer(np.arange(1, 4), _S))  # smooth per-clip shape modes, zero at both ends


@dataclass(frozen=True)
class Anatomy:
    """Per-clip heart shape and pose (heart-frame lengths are in LV end-diastolic lengths)."""

    length: float          # LV ED cavity length, image-width units
    tilt: float            # long-axis tilt (rad); > 0 swings the base to the image right
    apex: tuple[float, float]  # LV endocardial apex (x, y), image-width units
    w_sept: float          # ED half width, septal side
    w_lat: float           # ED half width, lateral side
    s_mid: float           # where the cavity is widest (fraction of length)
    gamma: float           # apex bluntness (smaller = rounder)
    annulus: float         # annulus half width / widest half width at ED
    bumps: np.ndarray      # (2, 3) shape-mode amplitudes (septal, lateral)
    long_es: float         # L_ES / L_ED (longitudinal shortening)
    width_es: float        # W_ES / W_ED (radial shortening; calibrated to the EF)
    wall: float            # lateral wall thickness at ED
    septum: float          # septal thickness at ED
    apex_wall: float       # apical wall thickness
    thickening: float      # relative wall thickening at ES
    rv_start: float        # RV apex position along the LV axis
    rv_end: float          # tricuspid annulus position (more apical than the mitral one)
    rv_width: float        # RV basal width at ED
    rv_contract: float     # RV width reduction at ES
    rv_wall: float
    la_depth: float
    ra_depth: float
    la_bulge: float
    ra_bulge: float
    atrial_wall: float
    sway: tuple[float, float]  # whole-heart shift at ES, image-width units
    papillary: float       # papillary muscle size (0 = not visible)


@dataclass(frozen=True)
class HeartFrames:
    """Outlines of every structure at every frame, in pixel coordinates (x, y)."""

    lv: np.ndarray          # (T, 2*N_SIDE-1, 2) cavity: septal annulus -> apex -> lateral annulus
    lv_outer: np.ndarray
    rv: np.ndarray
    rv_outer: np.ndarray
    la: np.ndarray
    la_outer: np.ndarray
    ra: np.ndarray
    ra_outer: np.ndarray
    leaflets: np.ndarray    # (T, 4, 2, 2) mitral anterior/posterior, tricuspid septal/anterior: hinge, tip
    papillary: np.ndarray | None
    pericardium: list[np.ndarray]  # polylines (T, N, 2)
    crux: np.ndarray        # (T, 1, 2) fibrous centre of the heart (bright)
    apex_index: int = N_SIDE - 1


def sample_anatomy(rng: np.random.Generator, ef: float) -> Anatomy:
    """Draw a plausible heart for a target ejection fraction (fraction, 0-1)."""
    dilation = 1.0 + 0.45 * max(0.0, 0.5 - ef)  # failing hearts are larger and rounder
    foreshortening = rng.uniform(0.88, 1.0)
    length = rng.uniform(0.5, 0.6) * min(dilation, 1.1) * foreshortening
    roundness = dilation / foreshortening
    anat = Anatomy(
        length=length,
        tilt=float(np.clip(rng.normal(0.08, 0.07), -0.12, 0.25)),
        apex=(rng.uniform(0.5, 0.58), rng.uniform(0.16, 0.26)),  # EchoNet's crop: apex 2-3 cm below the probe
        w_sept=rng.uniform(0.23, 0.27) * roundness,
        w_lat=rng.uniform(0.27, 0.32) * roundness,
        s_mid=rng.uniform(0.45, 0.62),
        gamma=rng.uniform(0.55, 0.75) * (0.85 + 0.15 * foreshortening),
        annulus=rng.uniform(0.72, 0.85),
        bumps=rng.normal(0.0, 0.035, size=(2, 3)),
        long_es=1.0 - rng.uniform(0.12, 0.24) * ef / 0.6,
        width_es=1.0,
        wall=rng.uniform(0.055, 0.08),
        septum=rng.uniform(0.08, 0.11),
        apex_wall=rng.uniform(0.04, 0.06),
        thickening=0.75 * ef,
        rv_start=rng.uniform(0.25, 0.4),
        rv_end=1.0 - rng.uniform(0.04, 0.1),
        rv_width=rng.uniform(0.42, 0.55),
        rv_contract=rng.uniform(0.15, 0.3),
        rv_wall=rng.uniform(0.035, 0.05),
        la_depth=rng.uniform(0.55, 0.75),
        ra_depth=rng.uniform(0.5, 0.7),
        la_bulge=rng.uniform(0.3, 0.6),
        ra_bulge=rng.uniform(0.3, 0.6),
        atrial_wall=rng.uniform(0.025, 0.04),
        sway=(rng.uniform(-0.01, 0.01), rng.uniform(-0.015, 0.004)),
        papillary=rng.uniform(0.8, 1.3) if rng.random() < 0.8 else 0.0,
    )
    return replace(anat, width_es=_calibrate_width(anat, ef))


# ---------------------------------------------------------------- LV cavity in the heart frame
def _profile(s: np.ndarray, ratio: np.ndarray, anat: Anatomy, side: int) -> np.ndarray:
    """Half width (relative to the widest) along the axis; `ratio` (T,1) is annulus / widest at each frame."""
    qa = np.clip(s / anat.s_mid, 0.0, 1.0)
    apical = (1.0 - (1.0 - qa) ** 2) ** anat.gamma
    qb = np.clip((s - anat.s_mid) / (1.0 - anat.s_mid), 0.0, 1.0)
    basal = 1.0 - (1.0 - ratio) * qb ** 2
    modes = np.sin(np.pi * np.outer(np.arange(1, 4), s))
    return np.where(s < anat.s_mid, apical, basal) * (1.0 + anat.bumps[side] @ modes)


def _lv_sides(anat: Anatomy, m: np.ndarray, s: np.ndarray = _S) -> tuple[np.ndarray, np.ndarray]:
    """Septal and lateral walls (T, n, 2) as (u, v), apex to annulus, for contraction states m (T,)."""
    m = np.asarray(m, dtype=np.float64)[:, None]
    length = 1.0 - m * (1.0 - anat.long_es)
    shrink = 1.0 - m * (1.0 - anat.width_es)
    annulus_shrink = 1.0 - m * 0.4 * (1.0 - anat.width_es)  # the fibrous annulus moves less
    ratio = anat.annulus * annulus_shrink / shrink
    u = s[None, :] * length
    sept = -anat.w_sept * shrink * _profile(s, ratio, anat, 0)
    lat = anat.w_lat * shrink * _profile(s, ratio, anat, 1)
    return np.stack([u, sept], -1), np.stack([u, lat], -1)


def _closed_lv(sept: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Cavity outline: septal annulus -> apex -> lateral annulus (closing edge = annulus line)."""
    return np.concatenate([sept[:, ::-1], lat[:, 1:]], axis=1)


def _ef_of(anat: Anatomy) -> float:
    """Area-length EF of the average beat (m=0 vs m=1), independent of pose and scale."""
    sept, lat = _lv_sides(anat, np.array([0.0, 1.0]))
    poly = _closed_lv(sept, lat)
    area = polygon_area(poly)
    base_mid = 0.5 * (sept[:, -1] + lat[:, -1])
    length = np.linalg.norm(base_mid - sept[:, 0], axis=-1)
    vol = area ** 2 / length
    return float(1.0 - vol[1] / vol[0])


def _calibrate_width(anat: Anatomy, ef: float) -> float:
    """Radial shortening that gives the target area-length EF (bisection; EF falls as width_es grows)."""
    lo, hi = 0.12, 1.0
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if _ef_of(replace(anat, width_es=mid)) > ef:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------- other structures
def _offset(poly: np.ndarray, h: np.ndarray | float) -> np.ndarray:
    """Move each point of polylines (T, N, 2) by h along its normal, away from the outline's centroid."""
    tangent = np.gradient(poly, axis=1)
    normal = np.stack([-tangent[..., 1], tangent[..., 0]], -1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-12
    away = poly - poly.mean(axis=1, keepdims=True)
    sign = np.sign(np.sum(normal * away, axis=(1, 2)))[:, None, None]
    sign[sign == 0] = 1.0
    return poly + sign * normal * np.asarray(h)[..., None]


def _atrium(lateral: np.ndarray, septal: np.ndarray, depth: np.ndarray, bulge: float, n: int = 22) -> np.ndarray:
    """Atrial cavity below an annulus, from the lateral hinge round the roof to the septal hinge (T, n, 2)."""
    phi = np.linspace(0.0, np.pi, n)
    mid = 0.5 * (lateral + septal)[:, None, :]
    half = 0.5 * (lateral - septal)[:, None, :]
    across = np.cos(phi) + bulge * np.sin(phi) * (1.0 + np.cos(phi)) / 2.0  # bulges on the free side
    down = np.sin(phi) ** 0.7
    axis = np.array([1.0, 0.0])  # +u, away from the apex
    return mid + across[None, :, None] * half + (depth[:, None] * down[None, :])[..., None] * axis


def _leaflet(hinge: np.ndarray, closed_tip: np.ndarray, direction: tuple[float, float], length: float,
             opening: np.ndarray) -> np.ndarray:
    """One valve leaflet (T, 2, 2): hinge and a tip moving from the coaptation point to the open position."""
    d = np.array(direction) / np.hypot(*direction)
    open_tip = hinge + length * d
    o = opening[:, None]
    return np.stack([hinge, (1.0 - o) * closed_tip + o * open_tip], axis=1)


def _rv_sides(anat: Anatomy, m: np.ndarray, thick: np.ndarray, extra: float) -> tuple[np.ndarray, np.ndarray]:
    """RV septal face and free wall (T, 16, 2), apex to tricuspid annulus; `extra` grows it (outer wall)."""
    start = anat.rv_start - 1.5 * extra
    s_rv = start + (anat.rv_end - start) * np.linspace(0.0, 1.0, 16) ** 1.2
    lv_sept, _ = _lv_sides(anat, m, s_rv)
    rv_sept = lv_sept - (anat.septum * thick)[..., None] * np.array([0.0, 1.0])
    q = np.linspace(0.0, 1.0, s_rv.size)
    width = anat.rv_width * (1.0 - anat.rv_contract * m)[:, None] + extra
    bow = np.sin(0.5 * np.pi * q) ** 0.85 * (1.0 - 0.12 * q ** 4)  # tapers to an acute apex
    rv_free = rv_sept - (width * bow[None])[..., None] * np.array([0.0, 1.0])
    return rv_sept, rv_free


def build_heart(anat: Anatomy, m: np.ndarray, mitral: np.ndarray, tricuspid: np.ndarray,
                size: int) -> HeartFrames:
    """Outlines of all structures for contraction states m (T,) and valve openings, in pixels."""
    m = np.asarray(m, dtype=np.float64)
    sept, lat = _lv_sides(anat, m)
    lv = _closed_lv(sept, lat)
    thick = 1.0 + anat.thickening * m[:, None]
    ramp = np.minimum(_S / 0.3, 1.0)
    h_sept = (anat.apex_wall + (anat.septum - anat.apex_wall) * ramp)[None] * thick
    h_lat = (anat.apex_wall + (anat.wall - anat.apex_wall) * ramp)[None] * thick
    lv_outer = _offset(lv, np.concatenate([h_sept[:, ::-1], h_lat[:, 1:]], axis=1))
    base_ext = np.array([0.07, 0.0])
    lv_outer = np.concatenate([lv_outer[:, :1] + base_ext, lv_outer, lv_outer[:, -1:] + base_ext], axis=1)

    # RV: its septal side is the LV septum's RV face; its free wall bows out to the left.
    rv_sept, rv_free = _rv_sides(anat, m, thick, 0.0)
    rv = np.concatenate([rv_sept, rv_free[:, ::-1]], axis=1)
    out_sept, out_free = _rv_sides(anat, m, thick, anat.rv_wall)
    rv_outer = np.concatenate([out_sept, out_free[:, ::-1]], axis=1)

    # Atria hang below the annuli; their roofs stay put while the base descends towards the apex.
    lv_len = sept[:, -1, 0]
    la_depth = anat.la_depth + (1.0 - lv_len) + 0.08 * anat.la_depth * m
    la = _atrium(lat[:, -1], sept[:, -1], la_depth, anat.la_bulge)
    ra_depth = anat.ra_depth + (1.0 - lv_len) + 0.08 * anat.ra_depth * m + (1.0 - anat.rv_end) * 0.5
    ra = _atrium(rv_free[:, -1], rv_sept[:, -1], ra_depth, anat.ra_bulge)
    la_outer = _offset(la, anat.atrial_wall)
    ra_outer = _offset(ra, anat.atrial_wall)

    # Valves: anterior mitral leaflet on the septal hinge, posterior on the lateral one.
    mv_mid = 0.5 * (sept[:, -1] + lat[:, -1]) - np.array([0.03, 0.0])
    tv_mid = 0.5 * (rv_sept[:, -1] + rv_free[:, -1]) - np.array([0.03, 0.0])
    leaflets = np.stack([
        _leaflet(sept[:, -1], mv_mid, (-1.0, -0.25), 0.27, mitral),
        _leaflet(lat[:, -1], mv_mid, (-1.0, 0.25), 0.17, mitral),
        _leaflet(rv_sept[:, -1], tv_mid, (-1.0, 0.2), 0.16, tricuspid),
        _leaflet(rv_free[:, -1], tv_mid, (-1.0, -0.2), 0.2, tricuspid),
    ], axis=1)

    papillary = None
    if anat.papillary > 0:
        k = int(np.searchsorted(_S, 0.62))
        centre = lat[:, k] * np.array([1.0, 0.72])
        ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        shape = np.stack([0.09 * np.cos(ang), 0.035 * np.sin(ang)], -1) * anat.papillary
        papillary = centre[:, None, :] + shape[None] * (1.0 - 0.3 * m)[:, None, None]

    k0 = int(np.searchsorted(_S, 0.25))
    lat_outer = lv_outer[:, N_SIDE + k0:]
    # Bright pericardium: along the LV lateral wall into the AV groove, and over the RV free wall.
    peri = [np.concatenate([lat_outer, la_outer[:, :6]], axis=1), out_free[:, 4:]]
    crux = 0.5 * (sept[:, -1] + rv_sept[:, -1]) + np.array([0.05, 0.0])

    pose = _pose(anat, m, size)
    return HeartFrames(
        lv=pose(lv), lv_outer=pose(lv_outer), rv=pose(rv), rv_outer=pose(rv_outer), la=pose(la),
        la_outer=pose(la_outer), ra=pose(ra), ra_outer=pose(ra_outer),
        leaflets=pose(leaflets.reshape(m.size, 8, 2)).reshape(m.size, 4, 2, 2),
        papillary=None if papillary is None else pose(papillary),
        pericardium=[pose(p) for p in peri], crux=pose(crux[:, None, :]),
    )


def landmarks(heart: HeartFrames, frame: int = 0) -> np.ndarray:
    """Pixel positions (K, 2) where walls run along the beam and echoes often drop out."""
    k = int(np.searchsorted(_S, 0.5))
    return np.stack([
        heart.lv_outer[frame, N_SIDE + k],                     # LV lateral wall, mid level
        0.5 * (heart.la[frame, -1] + heart.ra[frame, -1]),     # atrial septum, below the crux
        heart.rv_outer[frame, heart.rv_outer.shape[1] * 3 // 4],  # RV free wall
        heart.la_outer[frame, heart.la_outer.shape[1] // 5],   # LA lateral wall
        heart.lv_outer[frame, N_SIDE],                         # apex
    ])


def _pose(anat: Anatomy, m: np.ndarray, size: int):
    """Map heart-frame points (T, N, 2) as (u, v) to pixel (x, y) at frame t."""
    e_u = np.array([np.sin(anat.tilt), np.cos(anat.tilt)])
    e_v = np.array([np.cos(anat.tilt), -np.sin(anat.tilt)])
    shift = np.asarray(anat.apex)[None, :] + np.outer(m, anat.sway)  # (T, 2)

    def apply(pts: np.ndarray) -> np.ndarray:
        xy = anat.length * (pts[..., :1] * e_u + pts[..., 1:2] * e_v) + shift[:, None, :]
        return xy * size - 0.5  # pixel centres at integers

    return apply
