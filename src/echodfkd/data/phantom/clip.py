"""One phantom clip: draw its patient and scanner, simulate it, and derive its labels.

Each clip depends only on (seed, index, style) and the size/frames/fps overrides, so clips can be made in
any order, in any process, and come out identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from skimage.draw import polygon as sk_polygon

from echodfkd.data.phantom import corrupt as corruption
from echodfkd.data.phantom.anatomy import Anatomy, HeartFrames, build_heart, landmarks, sample_anatomy
from echodfkd.data.phantom.imaging import Acquisition, Scanner, sample_acquisition
from echodfkd.data.phantom.motion import Cycle, sample_cycle
from echodfkd.data.phantom.raster import fill_polygons
from echodfkd.data.phantom.flow import coarse_displacement, remap_grids
from echodfkd.data.phantom.scene import background_texture, cavity_haze, draw_scene, sample_echogenicity, trabeculae
from echodfkd.data.phantom.tables import draw_duration, draw_fps
from echodfkd.data.phantom.tracing import choose_traced_frames, trace_lv
from echodfkd.errors import DatasetError

STYLES = {"dynamic": 1, "synthetic": 2}
PREFIX = {"dynamic": "PH_dyn", "synthetic": "PH_syn"}
CM_PER_PX_112 = 0.14      # pixel size at 112 px (a ~16 cm deep sector), for area-length volumes
TRACE_JITTER = 0.011      # hand-drawn outline error, fraction of sqrt(cavity area)
MIN_TRACE_DICE = 0.92     # a drawn trace is redrawn if its EchoNet mask strays further than this
MIN_FRAMES, MAX_FRAMES = 28, 300
BEAT_MARGIN = 1.21        # clip must last this many (longest) RR intervals, plus a few frames
HR_RANGE = (45.0, 130.0)


@dataclass
class ClipResult:
    """Everything one clip produces: pixels, ground truth and the rows of the dataset tables."""

    name: str
    frames: np.ndarray        # uint8 (T, H, W)
    lv: np.ndarray            # bool (T, H, W)
    rv: np.ndarray            # bool (T, H, W)
    ed: np.ndarray            # every true ED frame
    es: np.ndarray            # every true ES frame
    ef: float                 # percent, from the masks (area-length) of the traced beat
    fps: int
    filelist: dict            # FileList.csv fields except FileName and Split
    tracings: list = field(default_factory=list)  # [X1, Y1, X2, Y2, Frame] rows
    kind: str | None = None   # corruption kind


def clip_name(style: str, index: int) -> str:
    """FileName of clip `index` (no extension), e.g. PH_dyn_000007."""
    return f"{PREFIX[style]}_{index:06d}"


def _rngs(seed: int, index: int, style: str) -> dict[str, np.random.Generator]:
    """Independent random streams per concern, so changing one part never reshuffles the others."""
    keys = ("clip", "motion", "anatomy", "imaging", "trace", "corrupt")
    seqs = np.random.SeedSequence([seed, index, STYLES[style]]).spawn(len(keys))
    return {k: np.random.default_rng(s) for k, s in zip(keys, seqs)}


def _draw_ef(rng: np.random.Generator) -> float:
    """EF (fraction) shaped like EchoNet-Dynamic: mostly normal, a tail of reduced function."""
    ef = rng.normal(0.60, 0.07) if rng.random() < 0.85 else rng.uniform(0.10, 0.55)
    return float(np.clip(ef, 0.10, 0.85))


def min_frames(fps: float) -> int:
    """Fewest frames that hold one whole beat at the fastest heart rate, at this frame rate."""
    return math.ceil(fps * BEAT_MARGIN * 60.0 / HR_RANGE[1]) + 5


def _timing(rng: np.random.Generator, style: str, frames: int | None, fps: float | None) -> tuple[int, int, float]:
    """(fps, n_frames, heart rate) with at least one whole beat in the clip."""
    hr = float(np.clip(np.exp(rng.normal(np.log(75.0), 0.2)), *HR_RANGE))
    if style == "synthetic":
        rate = int(round(fps)) if fps else 32
        n = frames or 192
    else:
        # With a forced length, only frame rates at which a fast beat fits are drawn.
        cap = (frames - 5) * HR_RANGE[1] / (60.0 * BEAT_MARGIN) if frames else None
        rate = int(round(fps)) if fps else draw_fps(rng, max_fps=cap)
        n = frames or int(np.clip(round(draw_duration(rng) * rate), MIN_FRAMES, MAX_FRAMES))
        if not frames:
            need = math.ceil(rate * BEAT_MARGIN * 60.0 / hr) + 5
            n = max(n, min(MAX_FRAMES, need))
    if n < min_frames(rate):
        raise DatasetError(f"phantom: {n} frames at {rate} fps is too short to hold one heart beat "
                           f"(need at least {min_frames(rate)} frames)")
    hr_min = 60.0 * BEAT_MARGIN / ((n - 5) / rate)
    return rate, n, max(hr, hr_min)


def true_phases(cycle: Cycle, area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every true ED (largest LV mask) and ES (smallest) frame, one per event inside the clip."""
    t = np.arange(area.size)

    def pick(times: np.ndarray, others: np.ndarray, sign: float) -> list[int]:
        found = []
        for te in times:
            if not -0.5 <= te <= area.size - 0.5:
                continue
            lo = others[others < te].max(initial=-np.inf)
            hi = others[others > te].min(initial=np.inf)
            win = t[(t > lo) & (t < hi)]
            if win.size == 0:
                continue
            # Extremum of the mask area in this beat; ties go to the frame nearest the true instant.
            best = np.lexsort((np.abs(win - te), -sign * area[win]))[0]
            found.append(int(win[best]))
        return found

    return (np.array(pick(cycle.ed_times, cycle.es_times, 1.0), dtype=np.int64),
            np.array(pick(cycle.es_times, cycle.ed_times, -1.0), dtype=np.int64))


def echonet_mask(rows: np.ndarray, size: int) -> np.ndarray:
    """EchoNet's mask of one 21-row trace: drop the axis, X1 then reversed X2, round, skimage fill."""
    x = np.rint(np.r_[rows[1:, 0], rows[1:, 2][::-1]]).astype(int)
    y = np.rint(np.r_[rows[1:, 1], rows[1:, 3][::-1]]).astype(int)
    mask = np.zeros((size, size), dtype=bool)
    rr, cc = sk_polygon(y, x, (size, size))
    mask[rr, cc] = True
    return mask


def _human_trace(heart: HeartFrames, lv: np.ndarray, frame: int, rng: np.random.Generator) -> np.ndarray:
    """A person's 21-row trace of the LV at `frame`, redrawn if it strays too far from the true border."""
    size = lv.shape[-1]
    for _ in range(8):
        rows = trace_lv(heart.lv[frame], heart.apex_index, rng, TRACE_JITTER)
        mask = echonet_mask(rows, size)
        inter = np.logical_and(mask, lv[frame]).sum()
        if 2.0 * inter / max(mask.sum() + lv[frame].sum(), 1) >= MIN_TRACE_DICE:
            return rows
    return trace_lv(heart.lv[frame], heart.apex_index)


def _volume_ml(heart: HeartFrames, lv: np.ndarray, frame: int) -> float:
    """Area-length LV volume (mL) at a frame: V = 8 A^2 / (3 pi L)."""
    size = lv.shape[-1]
    cm = CM_PER_PX_112 * 112.0 / size
    area = lv[frame].sum() * cm * cm
    apex = heart.lv[frame, heart.apex_index]
    base = 0.5 * (heart.lv[frame, 0] + heart.lv[frame, -1])
    length = float(np.linalg.norm(apex - base)) * cm
    return float(8.0 * area * area / (3.0 * np.pi * max(length, 1e-6)))


def _fit_in_sector(anatomy: Anatomy, acq: Acquisition, m: np.ndarray, margin: float = 0.06) -> Anatomy:
    """Nudge the heart's pose until the LV and its walls lie inside the fan (as a sonographer would)."""
    states = np.array([m.min(), m.max()])
    # The LV apex sits 1-2 cm below the probe, never inside the first few millimetres of the fan.
    apex = np.array([anatomy.apex[0], max(anatomy.apex[1], acq.sector_apex[1] + 0.09)])
    anatomy = replace(anatomy, apex=(float(apex[0]), float(apex[1])))
    for _ in range(20):
        heart = build_heart(anatomy, states, np.zeros(2), np.zeros(2), 1)
        d = heart.lv_outer + 0.5 - np.asarray(acq.sector_apex)
        theta = np.arctan2(d[..., 0], d[..., 1])
        limit = acq.half_angle - margin
        right, left = theta.max() - limit, -limit - theta.min()
        if right <= 0 and left <= 0:
            break
        tilt = anatomy.tilt
        if right > 0 and left > 0:  # too wide this close to the probe: move the heart deeper
            apex = apex + np.array([0.0, 0.01])
        else:
            radius = float(np.hypot(*(apex - acq.sector_apex)))
            apex = apex + np.array([(-right if right > 0 else left) * max(radius, 0.05), 0.0])
            tilt *= 0.9
        anatomy = replace(anatomy, apex=(float(apex[0]), float(apex[1])), tilt=tilt)
    return anatomy


def make_clip(seed: int, index: int, style: str = "dynamic", size: int = 112, kind: str | None = None,
              frames: int | None = None, fps: float | None = None) -> ClipResult:
    """Simulate clip `index` of a phantom dataset."""
    if style not in STYLES:
        raise DatasetError(f"phantom: unknown style {style!r} (expected one of {sorted(STYLES)})")
    r = _rngs(seed, index, style)
    ef_int = int(r["clip"].integers(10, 91))
    ef_target = ef_int / 100.0 if style == "synthetic" else _draw_ef(r["clip"])
    rate, n, hr = _timing(r["clip"], style, frames, fps)

    cycle = sample_cycle(r["motion"], n, rate, hr, variability=0.5 if style == "synthetic" else 1.0)
    ri = r["imaging"]
    acquisition = sample_acquisition(ri, style)
    anatomy = _fit_in_sector(sample_anatomy(r["anatomy"], ef_target), acquisition, cycle.m)
    heart = build_heart(anatomy, cycle.m, cycle.mitral, cycle.tricuspid, size)
    lv = fill_polygons(heart.lv, size, size)
    rv = fill_polygons(heart.rv, size, size)
    area = lv.sum(axis=(1, 2))
    ed, es = true_phases(cycle, area)

    levels = sample_echogenicity(ri)
    background = background_texture(ri, size, levels.surround * levels.myocardium)
    strands = trabeculae(heart, levels.trabeculae, size, ri)
    reflectivity = draw_scene(heart, levels, background, strands, cavity_haze(heart, levels, size, ri))
    scanner = Scanner(acquisition, size, ri, (landmarks(heart) + 0.5) / size)
    flow = remap_grids(coarse_displacement(heart, size), size)
    power = scanner.speckle(ri, np.abs(np.gradient(cycle.m)) * rate, rate, flow)
    video = scanner.render(reflectivity, power, ri)

    rt = r["trace"]
    ed_t, es_t, true_ed, true_es = choose_traced_frames(rt, ed, es, area, rate, kind == "ed_es_too_close")
    edv, esv = _volume_ml(heart, lv, true_ed), _volume_ml(heart, lv, true_es)
    ef = 100.0 * (edv - esv) / edv
    tracings: list = []
    if style == "dynamic":
        traces = {ed_t: [_human_trace(heart, lv, ed_t, rt)], es_t: [_human_trace(heart, lv, es_t, rt)]}
        if kind == "multi_annotator":
            traces[ed_t if rt.random() < 0.5 else es_t].append(None)
        order = [ed_t, es_t] if rt.random() < 0.5 else [es_t, ed_t]  # EchoNet's CSV order is not fixed
        for f in order:
            for rows in traces[f]:
                rows = _human_trace(heart, lv, f, rt) if rows is None else rows
                tracings.extend([float(a), float(b), float(c), float(d), int(f)] for a, b, c, d in rows)

    rc = r["corrupt"]
    if kind == "blank_frames":
        video = corruption.blank_frames(video, rc, keep=(ed_t, es_t))
    elif kind == "noisy_video":
        video = corruption.noisy_video(video, rc)

    if style == "synthetic":
        row = {"EF": ef_int, "ESV": 0.0, "EDV": 0.0}
    else:
        row = {"EF": round(ef, 8), "ESV": round(esv, 8), "EDV": round(edv, 8)}
    row.update({"FrameHeight": size, "FrameWidth": size, "FPS": rate, "NumberOfFrames": n})
    return ClipResult(name=clip_name(style, index), frames=video, lv=lv, rv=rv, ed=ed, es=es, ef=float(ef),
                      fps=rate, filelist=row, tracings=tracings, kind=kind)
