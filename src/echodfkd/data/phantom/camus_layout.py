"""Write phantom clips as a CAMUS 2023-release folder (NIfTI), so CAMUS code is tested without the dataset.

Layout: OUT/database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES,half_sequence}[_gt].nii.gz and
Info_{2CH,4CH}.cfg; OUT/phantom_camus.json records the settings.
- The half-sequence runs from a true ED to the next true ES of one beat (the beat that was traced for the
  phantom's EF when it runs ED -> ES, else the first ED -> ES beat); cfg ED = 1, ES = NbFrame.
- Labels: 0 background, 1 LV (the phantom's exact mask), 2 myocardium: a ring of ~1 cm around the LV,
  cut at the mitral plane, kept off the RV and inside the fan. No LA (3): the phantom has no atrium mask.
- Frames are portrait like CAMUS's (height = 1.31 x width, the native 778 x 594 ratio): the square
  phantom frame sits at the top and the extra depth below is black, so every mask pixel is kept exactly.
- cfg EF is the phantom's own EF (area-length with the exact long axis, as in the EchoNet layout's
  FileList); ImageQuality ranks the myocardium/cavity contrast-to-noise ratio at ED over every view of
  the folder into CAMUS's mix (~20 % Poor, 45 % Medium, 35 % Good), rewritten once all patients exist.
- The phantom draws only A4C: the 2CH view is a stand-in, the same generator with another seed stream.
NIfTI arrays are stored (x, y, t), i.e. the transpose of the (t, row, column) arrays `data.camus` returns.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from echodfkd.data.phantom.clip import CM_PER_PX_112, ClipResult, make_clip
from echodfkd.data.phantom.generate import check_settings
from echodfkd.errors import DatasetError
from echodfkd.io.atomic import save_text
from echodfkd.progress import progress

VIEWS = ("2CH", "4CH")
ASPECT = 778 / 594            # CAMUS native height / width
MYO_MM = 10.0                 # myocardium ring thickness
SEED_2CH = 7_000_003          # offset of the 2CH stand-in's seed stream
QUALITY_MIX = (0.20, 0.65)    # rank shares below which a view is Poor, then Medium: CAMUS's ~20/45/35 % mix
SETTINGS = "phantom_camus.json"
FORMAT_VERSION = 1
LABELS = {"background": 0, "LV": 1, "myocardium": 2}


def camus_shape(width: int) -> tuple[int, int]:
    """(height, width) of a CAMUS-like portrait frame `width` pixels wide (height rounded to even)."""
    return int(2 * round(width * ASPECT / 2)), int(width)


def pixel_mm(width: int) -> float:
    """Pixel size (mm, isotropic) of a phantom frame `width` pixels wide."""
    return 10.0 * CM_PER_PX_112 * 112.0 / width


def sector_mask(frames: np.ndarray) -> np.ndarray:
    """The fan: convex hull of every pixel that is ever non-zero, as a bool (H, W) mask."""
    points = cv2.findNonZero((frames.max(axis=0) > 0).astype(np.uint8))
    mask = np.zeros(frames.shape[1:], np.uint8)
    if points is not None:
        cv2.fillConvexPoly(mask, cv2.convexHull(points), 1)
    return mask.astype(bool)


def half_sequence(clip: ClipResult) -> tuple[int, int]:
    """(ED, ES) frames of one beat, ED < ES: the traced beat when it runs ED -> ES, else the first one."""
    pairs = [(int(d), int(min(s for s in clip.es if s > d))) for d in clip.ed if any(s > d for s in clip.es)]
    pairs = [(d, s) for d, s in pairs if not any(d < e < s for e in clip.ed)]  # no second ED in between
    if not pairs:
        raise DatasetError(f"phantom clip {clip.name}: no end-diastole followed by an end-systole")
    traced = sorted({int(t[4]) for t in clip.tracings})
    if len(traced) == 2:
        area = clip.lv.sum(axis=(1, 2))
        t_ed, t_es = sorted(traced, key=lambda f: -area[f])
        near = (int(clip.ed[np.argmin(np.abs(clip.ed - t_ed))]), int(clip.es[np.argmin(np.abs(clip.es - t_es))]))
        if near in pairs:
            return near
    return pairs[0]


def myocardium(lv: np.ndarray, rv: np.ndarray, sector: np.ndarray, thickness_px: float) -> np.ndarray:
    """A ring of `thickness_px` around each LV mask (T, H, W), cut at the LV's basal end, off the RV."""
    r = max(1, int(round(thickness_px)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    rows, cols = np.indices(lv.shape[1:])
    out = np.zeros_like(lv)
    for t, m in enumerate(lv):
        if not m.any():
            continue
        ring = cv2.dilate(m.astype(np.uint8), kernel).astype(bool) & ~m & ~rv[t] & sector
        # Long axis by PCA; the apex is the end nearer the probe (top), the base is the other end.
        y, x = np.nonzero(m)
        centre = np.array([y.mean(), x.mean()])
        _, vecs = np.linalg.eigh(np.cov(np.stack([y, x])))
        axis = vecs[:, -1] if vecs[0, -1] >= 0 else -vecs[:, -1]  # points down, towards the base
        proj = (rows - centre[0]) * axis[0] + (cols - centre[1]) * axis[1]
        base = ((y - centre[0]) * axis[0] + (x - centre[1]) * axis[1]).max()
        out[t] = ring & (proj <= base)
    return out


def contrast_to_noise(frame: np.ndarray, lv: np.ndarray, myo: np.ndarray) -> float:
    """(mean myocardium - mean cavity) / std of the cavity, at one frame."""
    cavity, wall = frame[lv].astype(np.float64), frame[myo].astype(np.float64)
    if cavity.size < 2 or wall.size == 0:
        return 0.0
    return float((wall.mean() - cavity.mean()) / max(cavity.std(), 1.0))


def grade_quality(cnrs: Sequence[float]) -> list[str]:
    """CAMUS ImageQuality per view from its contrast-to-noise ratio, by rank within the folder: the lowest
    20 % Poor, the next 45 % Medium, the rest Good (CAMUS's mix); ties keep their order of appearance."""
    order = np.argsort(np.asarray(cnrs, dtype=np.float64), kind="stable")
    grades = [""] * len(order)
    for rank, i in enumerate(order):
        share = rank / len(order)
        grades[i] = "Poor" if share < QUALITY_MIX[0] else "Medium" if share < QUALITY_MIX[1] else "Good"
    return grades


def _save_nifti(path: Path, array: np.ndarray, spacing_mm: float) -> None:
    """Save (T, H, W) or (H, W) uint8 as NIfTI (x, y[, t]) with isotropic in-plane spacing."""
    import nibabel as nib

    data = np.ascontiguousarray(np.transpose(array, (2, 1, 0)) if array.ndim == 3 else array.T)
    affine = np.diag([spacing_mm, spacing_mm, 1.0, 1.0])
    image = nib.Nifti1Image(data.astype(np.uint8), affine)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))


def view_arrays(clip: ClipResult, width: int, seed: int = 0) -> dict:
    """The view's CAMUS arrays: half-sequence frames and labels (T, H, W) at CAMUS shape, ED/ES and cfg."""
    ed, es = half_sequence(clip)
    h, w = camus_shape(width)
    size = clip.frames.shape[-1]
    sector = sector_mask(clip.frames)
    lv, rv = clip.lv[ed:es + 1], clip.rv[ed:es + 1]
    myo = myocardium(lv, rv, sector, MYO_MM / pixel_mm(size))
    labels = np.where(lv, LABELS["LV"], np.where(myo, LABELS["myocardium"], 0)).astype(np.uint8)
    frames = np.zeros((len(lv), h, w), np.uint8)
    frames[:, :size, :size] = clip.frames[ed:es + 1]
    full_labels = np.zeros_like(frames)
    full_labels[:, :size, :size] = labels
    cnr = contrast_to_noise(clip.frames[ed], clip.lv[ed], myo[0])
    info = {"ED": 1, "ES": len(frames), "NbFrame": len(frames), "ImageQuality": "Medium",  # graded later
            "EF": round(clip.ef, 1), "FrameRate": clip.fps, "PhantomClip": clip.name, "PhantomSeed": seed,
            "PhantomFrames": f"{ed}-{es}", "PhantomCNR": round(cnr, 3)}
    return {"frames": frames, "labels": full_labels, "info": info}


def _cfg_text(info: dict) -> str:
    return "".join(f"{k}: {v}\n" for k, v in info.items())


def write_patient(folder: Path, patient: str, clips: dict[str, tuple[int, ClipResult]], width: int) -> None:
    """Write one patient's files (every view in `clips`: view -> (seed, clip)) into `folder`."""
    spacing = pixel_mm(width)
    for view, (seed, clip) in clips.items():
        a = view_arrays(clip, width, seed)
        stem = folder / f"{patient}_{view}"
        _save_nifti(Path(f"{stem}_half_sequence.nii.gz"), a["frames"], spacing)
        _save_nifti(Path(f"{stem}_half_sequence_gt.nii.gz"), a["labels"], spacing)
        for phase, index in (("ED", 0), ("ES", len(a["frames"]) - 1)):
            _save_nifti(Path(f"{stem}_{phase}.nii.gz"), a["frames"][index], spacing)
            _save_nifti(Path(f"{stem}_{phase}_gt.nii.gz"), a["labels"][index], spacing)
        (folder / f"Info_{view}.cfg").write_text(_cfg_text(a["info"]))


def view_clip(seed: int, index: int, view: str, width: int, frames: int | None = None,
              fps: float | None = None) -> ClipResult:
    """The phantom clip behind one patient's view (2CH: the A4C generator on another seed stream)."""
    if view not in VIEWS:
        raise DatasetError(f"phantom: unknown CAMUS view {view!r} (use {', '.join(VIEWS)})")
    return make_clip(view_seed(seed, view), index, "dynamic", width, None, frames, fps)


def view_seed(seed: int, view: str) -> int:
    """The phantom seed behind a view: the dataset seed for 4CH, a separate stream for the 2CH stand-in."""
    return seed + SEED_2CH if view == "2CH" else seed



def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def generate_camus(out: str | os.PathLike, patients: int, seed: int = 0, width: int = 112,
                   views: tuple[str, ...] = VIEWS, frames: int | None = None, fps: float | None = None) -> Path:
    """Write (or finish writing) a CAMUS-layout phantom folder and return its path.

    Each patient folder is written under a temporary name and renamed when complete, so an interrupted
    run resumes with the patients it lacks; the same settings always give the same files.
    """
    if patients < 1:
        raise DatasetError(f"phantom: --videos (CAMUS patients) must be at least 1 (got {patients})")
    if not 32 <= width <= 1024:
        raise DatasetError(f"phantom: --size must be between 32 and 1024 pixels (got {width})")
    bad = [v for v in views if v not in VIEWS]
    if bad or not views:
        raise DatasetError(f"phantom: unknown CAMUS view(s) {', '.join(bad) or '(none)'} (use {', '.join(VIEWS)})")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root}: exists and is not a folder")
    database = root / "database_nifti"
    database.mkdir(parents=True, exist_ok=True)
    settings = {"format": FORMAT_VERSION, "layout": "camus", "patients": patients, "seed": seed, "width": width,
                "height": camus_shape(width)[0], "views": list(views), "frames": frames, "fps": fps}
    check_settings(root / SETTINGS, settings, root, what="CAMUS phantom")
    todo = [i for i in range(patients) if not (database / f"patient{i + 1:04d}").is_dir()]
    for i in progress(todo, desc="phantom camus", total=len(todo), unit="patient"):
        patient = f"patient{i + 1:04d}"
        clips = {v: (view_seed(seed, v), view_clip(seed, i, v, width, frames, fps)) for v in views}
        tmp = Path(tempfile.mkdtemp(prefix=f".{patient}.", dir=database))
        try:
            write_patient(tmp, patient, clips, width)
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
            os.replace(tmp, database / patient)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    _grade_folder(database, patients, views)
    return root


def _grade_folder(database: Path, patients: int, views: Sequence[str]) -> None:
    """Set every cfg's ImageQuality from the ranks of the views' PhantomCNR (rewritten only when it changes)."""
    from echodfkd.data.camus import parse_cfg

    paths = [database / f"patient{i + 1:04d}" / f"Info_{v}.cfg" for i in range(patients) for v in views]
    infos = [parse_cfg(p) for p in paths]
    for path, info, grade in zip(paths, infos, grade_quality([float(i["PhantomCNR"]) for i in infos])):
        if info.get("ImageQuality") != grade:
            save_text(path, _cfg_text({**info, "ImageQuality": grade}))
