"""Human-like EchoNet tracings of the phantom LV: which frame a person picks, and how they draw it.

An EchoNet trace has 21 rows (X1, Y1, X2, Y2): row 0 is the long axis from the apex to the midpoint of the
mitral annulus, rows 1-20 are chords perpendicular to it, X1/Y1 on the septal wall and X2/Y2 on the
lateral wall. The person draws the endocardium with a smooth jitter, the axis follows from their outline,
and the frame they call ED/ES is off the true one by a Laplace-distributed number of frames.
"""

from __future__ import annotations

import numpy as np

N_CHORDS = 20
FIRST_CHORD = 0.015  # first chord at 1.5 % of the axis from the apex, last on the annulus
# EchoNet's rasteriser rounds vertices and keeps pixels on the outline, which inflates a mask by about half a
# pixel all round; drawing the outline this much inside the border makes the rasterised trace unbiased.
RASTER_INSET = 0.4

# Frame-choice noise at 50 fps (DESIGN B, annotator noise): E|x| ~ 2.4 (ED) and ~ 2.0 (ES, ES earlier).
ED_LOC, ED_SCALE = 0.0, 2.4
ES_LOC, ES_SCALE = -1.0, 1.76   # E|x| = |loc| + scale * exp(-|loc| / scale) ~ 2.0
GIVE_UP_P, GIVE_UP_RANGE = 0.02, 6


def _resample(poly: np.ndarray, n: int) -> np.ndarray:
    """n points evenly spaced by arc length along an open polyline (N, 2)."""
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    arc = np.r_[0.0, np.cumsum(seg)]
    at = np.linspace(0.0, arc[-1], n)
    return np.stack([np.interp(at, arc, poly[:, 0]), np.interp(at, arc, poly[:, 1])], -1)


def _jitter(poly: np.ndarray, rng: np.random.Generator, sigma: float, bias: float) -> np.ndarray:
    """Displace an open outline along its outward normals by a smooth random amount plus `bias` (pixels)."""
    a = np.linspace(0.0, 1.0, poly.shape[0])
    k = np.arange(1, 6)[:, None]
    coef = rng.normal(0.0, 1.0, size=(2, 5, 1)) / k  # smoother: higher modes are weaker
    wobble = (coef[0] * np.sin(np.pi * k * a) + coef[1] * np.cos(np.pi * k * a)).sum(0)
    wobble *= sigma / (wobble.std() + 1e-9)
    wobble += rng.normal(0.0, 0.25 * sigma, size=a.size)
    tangent = np.gradient(poly, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], -1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    if np.sum(normal * (poly - poly.mean(axis=0))) < 0:  # make positive offsets point outwards
        normal = -normal
    return poly + normal * (wobble + bias)[:, None]


def _side_at(side: np.ndarray, apex: np.ndarray, axis: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Points of a wall (apex -> hinge) whose projection on the axis equals u; beyond the hinge, extend."""
    proj = (side - apex) @ axis
    proj = np.maximum.accumulate(proj) + np.arange(proj.size) * 1e-9  # monotone for interpolation
    pts = np.stack([np.interp(u, proj, side[:, 0]), np.interp(u, proj, side[:, 1])], -1)
    beyond = u > proj[-1]
    pts[beyond] = side[-1] + (u[beyond] - proj[-1])[:, None] * axis
    return pts


def trace_lv(contour: np.ndarray, apex_index: int, rng: np.random.Generator | None = None,
             jitter: float = 0.0, inset: float = RASTER_INSET) -> np.ndarray:
    """EchoNet trace (21, 4) of an LV outline (septal hinge -> apex -> lateral hinge), in its pixel space.

    `jitter` is the standard deviation of the hand-drawn outline error as a fraction of the square root of
    the cavity area (0 traces the true outline); `inset` (pixels) moves the outline inside the border.
    """
    sept = _resample(contour[apex_index::-1], 80)   # apex -> septal hinge
    lat = _resample(contour[apex_index:], 80)        # apex -> lateral hinge
    outline = np.concatenate([sept[::-1], lat[1:]])
    x, y = contour[:, 0], contour[:, 1]
    sigma = jitter * np.sqrt(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))
    bias = 0.0
    if sigma > 0 and rng is not None:
        bias = rng.normal(0.0, 0.2 * sigma)  # some people draw slightly inside or outside the border
    outline = _jitter(outline, rng, sigma, bias - inset) if sigma > 0 and rng is not None else \
        _jitter(outline, np.random.default_rng(0), 0.0, -inset)
    sept, lat = outline[:80][::-1], outline[79:]
    mid = 0.5 * (sept[-1] + lat[-1])
    # The apex is where the drawn outline is farthest from the annulus midpoint.
    outline = np.concatenate([sept[::-1], lat[1:]])
    k = int(np.argmax(np.linalg.norm(outline - mid, axis=1)))
    apex = outline[k]
    sept, lat = outline[:k + 1][::-1], outline[k:]
    axis = mid - apex
    length = float(np.linalg.norm(axis))
    axis /= length
    u = length * (FIRST_CHORD + (1.0 - FIRST_CHORD) * np.arange(N_CHORDS) / (N_CHORDS - 1))
    rows = np.empty((N_CHORDS + 1, 4))
    rows[0] = [apex[0], apex[1], mid[0], mid[1]]
    rows[1:, :2] = _side_at(sept, apex, axis, u)
    rows[1:, 2:] = _side_at(lat, apex, axis, u)
    return rows


def human_frame_offset(rng: np.random.Generator, phase: str, fps: float) -> int:
    """How many frames a person's ED/ES pick is off the true one (scaled from 50 fps to this rate)."""
    if rng.random() < GIVE_UP_P:
        return int(rng.integers(-GIVE_UP_RANGE, GIVE_UP_RANGE + 1))
    loc, scale = (ED_LOC, ED_SCALE) if phase == "ED" else (ES_LOC, ES_SCALE)
    k = fps / 50.0
    return int(np.round(rng.laplace(loc * k, scale * k)))


def choose_traced_frames(rng: np.random.Generator, ed: np.ndarray, es: np.ndarray, area: np.ndarray,
                         fps: float, too_close: bool = False) -> tuple[int, int, int, int]:
    """Pick one beat's true (ED, ES) and the frames a person would trace: (ed_traced, es_traced, ed, es)."""
    events = sorted([(int(f), "ED") for f in ed] + [(int(f), "ES") for f in es])
    pairs = [(a, b) for a, b in zip(events[:-1], events[1:]) if a[1] != b[1]]
    first, second = pairs[int(rng.integers(len(pairs)))]
    true_ed, true_es = (first[0], second[0]) if first[1] == "ED" else (second[0], first[0])
    last = area.size - 1
    if too_close:
        # Two adjacent frames in systole, the first strictly larger (so the pair is unambiguous).
        step = 1 if true_es > true_ed else -1
        ed_t = true_ed
        while ed_t != true_es and area[ed_t + step] >= area[ed_t]:
            ed_t += step
        if ed_t == true_es:
            ed_t = true_es - step
        return ed_t, ed_t + step, true_ed, true_es
    for _ in range(50):
        ed_t = int(np.clip(true_ed + human_frame_offset(rng, "ED", fps), 0, last))
        es_t = int(np.clip(true_es + human_frame_offset(rng, "ES", fps), 0, last))
        if abs(ed_t - es_t) >= 2 and area[ed_t] > area[es_t] * 1.03:
            return ed_t, es_t, true_ed, true_es
    return true_ed, true_es, true_ed, true_es
