"""Find the imaging sector of an echo clip and frame it the way EchoNet-Dynamic framed its 112x112 clips.

The sector is where pixels change from frame to frame most of the time: burnt-in text, depth markers and
colour bars are static, a sweeping ECG trace passes each pixel only briefly, and what is left of thin
lines is removed by a morphological opening. The largest connected region is
filled and replaced by its convex hull (a fan is convex), then a fan (apex, two edges, radius) is fitted
to it for the crop. Everything outside the hull is blanked.

EchoNet framing, measured with this module's own fit on the real 112x112 clips in `../shared/fixtures`
(3 EchoNet-Dynamic TEST clips and one of the same geometry; `benchmarks/bench_convert.py --framing`
prints it): the imaged depth (first sector row to the bottom of the arc) is 0.989 of the frame side
(mean; 0.953-1.017), the first sector row lies 0.071 of the side below the top (median; 0.063-0.107)
and the fitted apex (where the two edges meet) 0.558 of the side from the left (mean; 0.536-0.583).
So the crop cuts the sector's upper corners and a little of the arc, and an EchoNet clip converts to
(nearly) itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from echodfkd.errors import VideoError

OUTPUT_SIZE = 112
#: EchoNet's framing: apex x and first sector row as fractions of the side; side per imaged depth.
APEX_X, TOP_MARGIN, SIDE_PER_DEPTH = 0.558, 0.071, 1.011
#: The first imaged row lies at most this fraction of the radius below the fitted apex.
NEAR_FIELD = 0.1
#: Frames sampled (evenly) to measure motion; enough for a stable temporal spread.
SAMPLE_FRAMES = 48
#: A pixel is "moving" when its median change between frames exceeds this many grey levels.
MOTION_LEVEL = 1.0
#: The region found must cover at least this fraction of the frame.
MIN_AREA = 0.04


@dataclass(frozen=True)
class SectorGeometry:
    """Where the sector lies in the source frame, and the square crop taken around it (source pixels)."""

    source_height: int
    source_width: int
    apex_x: float
    apex_y: float
    radius: float
    angle_left: float  # degrees from straight down, negative to the image left
    angle_right: float
    fan: bool  # False when no fan could be fitted (e.g. a linear probe): the crop is centred on the region
    area: int  # sector pixels
    crop_x: int
    crop_y: int
    crop_side: int
    output_size: int = OUTPUT_SIZE

    def to_dict(self) -> dict:
        """Plain values for CSV/JSON records."""
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def motion_map(frames: np.ndarray) -> np.ndarray:
    """Per-pixel median absolute change between successive frames (float32, H x W), over up to
    SAMPLE_FRAMES evenly spaced frames. A median ignores what changes only now and then: a sweeping ECG
    trace, a cursor, one odd frame of a lossy codec."""
    frames = np.asarray(frames)
    idx = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), SAMPLE_FRAMES)).round().astype(int))
    sample = frames[idx].astype(np.int16)
    return np.median(np.abs(np.diff(sample, axis=0)), axis=0).astype(np.float32)


def sector_mask(frames: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask of the imaging sector: moving pixels, opened, largest region, convex hull."""
    frames = np.asarray(frames)
    if frames.ndim != 3 or len(frames) < 2:
        raise VideoError("the imaging sector is found from motion, which needs at least 2 frames")
    h, w = frames.shape[1:]
    moving = (motion_map(frames) > MOTION_LEVEL).astype(np.uint8)
    k = 2 * max(1, round(min(h, w) / 120)) + 1  # wider than an ECG trace or a text stroke
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    # Open first to drop thin lines and marker dots (before anything can bridge them to the sector),
    # then close so quieter patches inside it (blood pools) do not split it.
    moving = cv2.morphologyEx(moving, cv2.MORPH_OPEN, kernel)
    moving = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
    if count < 2:
        raise VideoError("no imaging sector found: nothing in the frame changes over time")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = (labels == largest).astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(contours))
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [hull], 1)
    if mask.sum() < MIN_AREA * h * w:
        raise VideoError(f"no imaging sector found: the largest moving region covers only "
                         f"{mask.sum() / (h * w):.1%} of the frame")
    return mask.astype(bool)


def _edge_lines(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Least-squares lines x = a*y + b through the left and right edges of the sector's upper half."""
    h, w = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    top, bottom = rows[0], rows[-1]
    ys, lefts, rights = [], [], []
    for y in range(top + max(2, (bottom - top) // 20), top + (bottom - top) // 2):
        xs = np.flatnonzero(mask[y])
        if len(xs) == 0 or xs[0] == 0 or xs[-1] == w - 1:
            continue  # the edge runs off the frame here
        ys.append(y)
        lefts.append(xs[0])
        rights.append(xs[-1])
    if len(ys) < 5:
        return None
    y = np.asarray(ys, np.float64)
    left = np.polyfit(y, np.asarray(lefts, np.float64), 1)
    right = np.polyfit(y, np.asarray(rights, np.float64), 1)
    return y, left, right


def fit_fan(mask: np.ndarray) -> dict:
    """Apex, radius and edge angles of a fan-shaped mask (falls back to the region's box if no fan fits)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    lines = _edge_lines(mask)
    fan = False
    if lines is not None:
        _, (al, bl), (ar, br) = lines
        if ar - al > 0.2:  # edges diverge downwards: a fan
            apex_y = (bl - br) / (ar - al)
            apex_x = al * apex_y + bl
            fan = ys.min() - 0.25 * (ys.max() - ys.min()) <= apex_y <= ys.min() + 0.1 * (ys.max() - ys.min())
    if fan:
        radius = float(np.percentile(np.hypot(xs - apex_x, ys - apex_y), 99.5))
        angle_left = float(np.degrees(np.arctan(al)))  # x grows by `a` per row: the edge's angle from vertical
        angle_right = float(np.degrees(np.arctan(ar)))
    else:  # not a fan: treat the region's top centre as the apex and its height as the radius
        apex_x, apex_y = (xs.min() + xs.max()) / 2.0, float(ys.min())
        radius = float(ys.max() - ys.min() + 1)
        angle_left = angle_right = 0.0
    return {"apex_x": float(apex_x), "apex_y": float(apex_y), "radius": radius, "angle_left": angle_left,
            "angle_right": angle_right, "fan": bool(fan)}


def _add_wedge(mask: np.ndarray, fan: dict, row: int) -> np.ndarray:
    """The mask with the fan's wedge from the apex down to `row` filled in (between the fitted edges)."""
    depth = row - fan["apex_y"]
    left = fan["apex_x"] + np.tan(np.radians(fan["angle_left"])) * depth
    right = fan["apex_x"] + np.tan(np.radians(fan["angle_right"])) * depth
    wedge = np.array([[fan["apex_x"], max(0.0, fan["apex_y"])], [left, row], [right, row]])
    out = mask.astype(np.uint8)
    cv2.fillPoly(out, [np.round(wedge).astype(np.int32)], 1)
    return out.astype(bool)


def find_sector(frames: np.ndarray, output_size: int = OUTPUT_SIZE) -> tuple[np.ndarray, SectorGeometry]:
    """The sector mask (H, W) of grey frames (T, H, W) and its geometry, with EchoNet's square crop."""
    mask = sector_mask(frames)
    fan = fit_fan(mask)
    if fan["fan"]:
        found = int(np.flatnonzero(mask.any(axis=1))[0])
        # A dark, quiet near field can leave the first rows out of the mask: the first imaged row is
        # taken no lower than NEAR_FIELD x radius below the fitted apex (EchoNet's clips: 0.05-0.09),
        # and the wedge between the fitted edges above it is kept.
        top = min(found, fan["apex_y"] + NEAR_FIELD * fan["radius"])
        if found > top + 1:
            mask = _add_wedge(mask, fan, found)
        depth = fan["apex_y"] + fan["radius"] - top  # first imaged row to the bottom of the arc
        side = max(8, round(SIDE_PER_DEPTH * depth))
        x0 = round(fan["apex_x"] - APEX_X * side)
        y0 = round(top - TOP_MARGIN * side)
    else:  # a square around the region, centred on it
        ys, xs = np.nonzero(mask)
        side = int(max(ys.max() - ys.min(), xs.max() - xs.min()) + 1)
        x0 = round((xs.min() + xs.max() + 1 - side) / 2)
        y0 = int(ys.min())
    h, w = mask.shape
    geometry = SectorGeometry(source_height=h, source_width=w, area=int(mask.sum()), crop_x=int(x0),
                              crop_y=int(y0), crop_side=int(side), output_size=output_size, **fan)
    return mask, geometry


def _crop(image: np.ndarray, g: SectorGeometry) -> np.ndarray:
    """The square crop of one (H, W) image, zero-padded where the box leaves the frame."""
    h, w = image.shape
    out = np.zeros((g.crop_side, g.crop_side), image.dtype)
    sy0, sx0 = max(0, g.crop_y), max(0, g.crop_x)
    sy1, sx1 = min(h, g.crop_y + g.crop_side), min(w, g.crop_x + g.crop_side)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - g.crop_y:sy1 - g.crop_y, sx0 - g.crop_x:sx1 - g.crop_x] = image[sy0:sy1, sx0:sx1]
    return out


def frame_clip(frames: np.ndarray, mask: np.ndarray, g: SectorGeometry) -> np.ndarray:
    """Blank outside the sector, crop EchoNet's square and resize to the output size (INTER_AREA)."""
    n = g.output_size
    keep = mask.astype(np.uint8)
    out = np.empty((len(frames), n, n), np.uint8)
    shrink = g.crop_side > n
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(_crop(frame * keep, g), (n, n), interpolation=interp)
    return out


def to_source(masks: np.ndarray, g: SectorGeometry) -> np.ndarray:
    """Map output-frame masks (T, n, n; uint8 soft or bool) back into the source frame (T, H, W), same dtype."""
    masks = np.asarray(masks)
    src = masks.astype(np.uint8) * (255 if masks.dtype == bool else 1)
    out = np.zeros((len(src), g.source_height, g.source_width), np.uint8)
    sy0, sx0 = max(0, g.crop_y), max(0, g.crop_x)
    sy1 = min(g.source_height, g.crop_y + g.crop_side)
    sx1 = min(g.source_width, g.crop_x + g.crop_side)
    for i, m in enumerate(src):
        big = cv2.resize(m, (g.crop_side, g.crop_side), interpolation=cv2.INTER_LINEAR)
        out[i, sy0:sy1, sx0:sx1] = big[sy0 - g.crop_y:sy1 - g.crop_y, sx0 - g.crop_x:sx1 - g.crop_x]
    return out >= 128 if masks.dtype == bool else out


def already_framed(g: SectorGeometry, tolerance: float = 0.12) -> bool:
    """Whether the source is already framed like EchoNet (square, crop box within `tolerance` of the frame)."""
    h, w = g.source_height, g.source_width
    if abs(h - w) > tolerance * w:
        return False
    return (abs(g.crop_x) <= tolerance * w and abs(g.crop_y) <= tolerance * h
            and abs(g.crop_side - w) <= tolerance * w)


def overlay(frame: np.ndarray, mask: np.ndarray, g: SectorGeometry) -> np.ndarray:
    """An RGB picture of one source frame with the sector outline (green), crop box (yellow), apex (red)."""
    rgb = cv2.cvtColor(np.asarray(frame, np.uint8), cv2.COLOR_GRAY2RGB)
    tint = rgb.copy()
    tint[~mask] = (0.35 * tint[~mask] + np.array([90, 0, 90]) * 0.65).astype(np.uint8)  # outside: purple
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thick = max(1, round(max(rgb.shape[:2]) / 300))
    cv2.drawContours(tint, contours, -1, (0, 255, 0), thick)
    cv2.rectangle(tint, (g.crop_x, g.crop_y), (g.crop_x + g.crop_side - 1, g.crop_y + g.crop_side - 1),
                  (255, 220, 0), thick)
    cv2.circle(tint, (round(g.apex_x), round(g.apex_y)), 3 * thick, (255, 0, 0), -1)
    return tint
