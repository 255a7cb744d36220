"""CAMUS (Leclerc et al., 2019): 2CH/4CH half-sequences (ED -> ES) with labels, ED/ES and metadata.

Two releases are read:
- 2023 `database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES,half_sequence}[_gt].nii.gz` (nibabel);
- 2019 `training|testing/patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES,sequence}[_gt].mhd` + `.raw` (SimpleITK).
Each patient folder also holds `Info_{2CH,4CH}.cfg` ("Key: value" lines: ED, ES, NbFrame, ImageQuality, EF
or LVef, ...). ED and ES there are 1-based frame numbers; this reader returns 0-based indices.
Labels: 0 background, 1 LV cavity, 2 myocardium, 3 left atrium. Arrays are (T, H, W), rows top to bottom:
NIfTI stores (x, y, t), so it is transposed to match what SimpleITK returns for the same file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from echodfkd.errors import DatasetError
from echodfkd.io.video import resize_frames

VIEWS = ("2CH", "4CH")
PHASES = ("ED", "ES")
LV_LABEL = 1
EXTENSIONS = (".nii.gz", ".nii", ".mhd")
SEQUENCE_STEMS = ("half_sequence", "sequence")  # 2023 name first, then 2019
_PATIENT = re.compile(r"^patient\d+$")


@dataclass
class CamusSequence:
    """One patient's view: frames, labels (None in unlabelled test sets), 0-based ED/ES and cfg metadata."""

    patient: str
    view: str
    frames: np.ndarray
    labels: np.ndarray | None
    ed: int
    es: int
    info: dict[str, object] = field(default_factory=dict)
    spacing: tuple[float, float] | None = None  # (row, column) pixel size in mm

    @property
    def lv(self) -> np.ndarray | None:
        """Bool (T, H, W) left-ventricle masks (label 1), or None without labels."""
        return None if self.labels is None else self.labels == LV_LABEL


def parse_cfg(path: Path) -> dict[str, object]:
    """Parse an Info_*.cfg file ("Key: value" lines); numbers become int/float."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    info: dict[str, object] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if ":" not in line:
            raise DatasetError(f"{path} line {number}: expected 'Key: value', got {line.strip()!r}")
        key, value = (part.strip() for part in line.split(":", 1))
        info[key] = _number(value)
    return info


def _number(value: str) -> object:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def read_volume(path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Read a CAMUS image as (T, H, W) (a 2-D image gives T = 1) and its (row, column) spacing."""
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            image = nib.load(str(path))
            data = np.asanyarray(image.dataobj)
            zooms = tuple(float(z) for z in image.header.get_zooms()[:2])
            data = data.reshape(data.shape[:2] + (-1,)) if data.ndim >= 2 else data
            array = np.transpose(data, (2, 1, 0))  # (x, y, t) -> (t, y, x)
        else:
            import SimpleITK as sitk

            image = sitk.ReadImage(str(path))
            array = sitk.GetArrayFromImage(image)
            zooms = tuple(float(z) for z in image.GetSpacing()[:2])
            array = array[None] if array.ndim == 2 else array.reshape((-1,) + array.shape[-2:])
    except DatasetError:
        raise
    except Exception as exc:  # nibabel, SimpleITK and zlib raise many types for a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(f"{path}: unreadable image ({first})") from None
    if array.ndim != 3 or 0 in array.shape:
        raise DatasetError(f"{path}: expected a 2-D image or a 2-D+time sequence, got shape {array.shape}")
    return np.ascontiguousarray(array), (zooms[1], zooms[0]) if len(zooms) == 2 else None


def _as_uint8(array: np.ndarray) -> np.ndarray:
    return array if array.dtype == np.uint8 else np.clip(np.rint(array), 0, 255).astype(np.uint8)


def _resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_NEAREST) for f in labels])


class Camus:
    """A CAMUS folder (2023 NIfTI or 2019 MHD): the release root, `database_nifti/`, or `training/`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: CAMUS folder not found")
        self._dirs: dict[str, Path] = {}
        for depth in ("*", "*/*", "*/*/*"):  # patients may sit one or two folders down
            for folder in sorted(self.root.glob(depth)):
                if folder.is_dir() and _PATIENT.match(folder.name):
                    self._dirs.setdefault(folder.name, folder)
            if self._dirs:
                break
        if not self._dirs:
            raise DatasetError(f"{self.root}: no patientXXXX folder found (expected a CAMUS database_nifti/, "
                               "training/ or testing/ folder)")

    def __len__(self) -> int:
        return len(self._dirs)

    def __repr__(self) -> str:
        return f"Camus({str(self.root)!r}, patients={len(self)})"

    def patients(self) -> list[str]:
        """Patient names (patientXXXX), sorted."""
        return sorted(self._dirs)

    def _dir(self, patient: str) -> Path:
        if patient not in self._dirs:
            raise DatasetError(f"{self.root}: no patient {patient!r}")
        return self._dirs[patient]

    def _file(self, patient: str, view: str, stems: tuple[str, ...], gt: bool) -> Path | None:
        if view not in VIEWS:
            raise DatasetError(f"unknown CAMUS view {view!r}: use one of {', '.join(VIEWS)}")
        folder = self._dir(patient)
        for stem in stems:
            for ext in EXTENSIONS:
                path = folder / f"{patient}_{view}_{stem}{'_gt' if gt else ''}{ext}"
                if path.is_file():
                    return path
        return None

    def patient_dir(self, patient: str) -> Path:
        """The folder of one patient."""
        return self._dir(patient)

    def find(self, patient: str, view: str, stem: str, gt: bool = False) -> Path | None:
        """The file `<patient>_<view>_<stem>[_gt]` (.nii.gz, .nii or .mhd; 'half_sequence' also finds
        2019's 'sequence'), or None when absent."""
        stems = SEQUENCE_STEMS if stem in SEQUENCE_STEMS else (stem,)
        return self._file(patient, view, stems, gt)

    def views(self, patient: str) -> list[str]:
        """Views of a patient that have a sequence file."""
        return [v for v in VIEWS if self._file(patient, v, SEQUENCE_STEMS, gt=False) is not None]

    def format(self, patient: str) -> str:
        """'nifti' (2023 release) or 'mhd' (2019 release), from the patient's sequence files."""
        for view in self.views(patient):
            path = self._file(patient, view, SEQUENCE_STEMS, gt=False)
            return "mhd" if path.suffix == ".mhd" else "nifti"
        raise DatasetError(f"{self._dir(patient)}: no sequence file")

    def info(self, patient: str, view: str) -> dict[str, object]:
        """Metadata of a view from Info_<view>.cfg (empty when the file is absent)."""
        if view not in VIEWS:
            raise DatasetError(f"unknown CAMUS view {view!r}: use one of {', '.join(VIEWS)}")
        path = self._dir(patient) / f"Info_{view}.cfg"
        return parse_cfg(path) if path.is_file() else {}

    def image(self, patient: str, view: str, phase: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The single ED or ES image (H, W) uint8 and its labels (None when absent)."""
        phase = phase.upper()
        if phase not in PHASES:
            raise DatasetError(f"unknown phase {phase!r}: use ED or ES")
        path = self._file(patient, view, (phase,), gt=False)
        if path is None:
            raise DatasetError(f"{self._dir(patient)}: no {patient}_{view}_{phase} image")
        image = _as_uint8(read_volume(path)[0])[0]
        gt_path = self._file(patient, view, (phase,), gt=True)
        labels = None if gt_path is None else _as_uint8(read_volume(gt_path)[0])[0]
        if labels is not None and labels.shape != image.shape:
            raise DatasetError(f"{gt_path}: labels are {labels.shape}, the image is {image.shape}")
        return image, labels

    def sequence(self, patient: str, view: str, size: int | tuple[int, int] | None = None) -> CamusSequence:
        """The half-sequence (ED -> ES) of a view, optionally resized (labels with nearest neighbour)."""
        path = self._file(patient, view, SEQUENCE_STEMS, gt=False)
        if path is None:
            raise DatasetError(f"{self._dir(patient)}: no {patient}_{view}_half_sequence (or _sequence) file")
        frames, spacing = read_volume(path)
        frames = _as_uint8(frames)
        gt_path = self._file(patient, view, SEQUENCE_STEMS, gt=True)
        labels = None
        if gt_path is not None:
            labels = _as_uint8(read_volume(gt_path)[0])
            if labels.shape != frames.shape:
                raise DatasetError(f"{gt_path}: labels are {labels.shape}, the frames are {frames.shape}")
        info = self.info(patient, view)
        ed, es = self._phase_index(info, "ED", 0, len(frames), patient, view), \
            self._phase_index(info, "ES", len(frames) - 1, len(frames), patient, view)
        if size is not None:
            target = (size, size) if isinstance(size, int) else tuple(size)
            if spacing is not None:
                spacing = (spacing[0] * frames.shape[1] / target[0], spacing[1] * frames.shape[2] / target[1])
            frames = resize_frames(frames, target)
            labels = None if labels is None else _resize_labels(labels, target)
        return CamusSequence(patient, view, frames, labels, ed, es, info, spacing)

    def _phase_index(self, info: dict[str, object], key: str, default: int, length: int,
                     patient: str, view: str) -> int:
        """0-based frame of ED/ES from the cfg's 1-based number (the half-sequence ends when absent)."""
        if key not in info:
            return default
        value = info[key]
        if not isinstance(value, int) or not 1 <= value <= length:
            raise DatasetError(f"{self._dir(patient) / f'Info_{view}.cfg'}: {key} is {value!r}, expected a frame "
                               f"number from 1 to {length} (the sequence's length)")
        return value - 1
