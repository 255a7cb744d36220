"""What `echodfkd reproduce` is given: settings, and the checks that refuse a folder that is not what it claims.

EchoNet-Dynamic (`--dynamic`) must carry `VolumeTracings.csv` (the human ED/ES traces every Table needs)
and a TEST split. The student's training set (`--synthetic`) must have TRAIN and VAL clips; a folder with
tracings there is accepted with a note (training on real EchoNet videos is a valid experiment, but it is
not the paper's data-free setting). The teacher checkpoint must load into the named architecture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from echodfkd import launch
from echodfkd.distill.config import defaults
from echodfkd.errors import DatasetError, EchoDFKDError, ModelError

_DISTILL = defaults()  # the distill settings reproduce shares (DistillConfig is their one home)

#: The paper's scaling-law grid: B and l from 1 to 4.
FULL_GRID = [(b, l) for b in range(1, 5) for l in range(1, 5)]
#: The paper's headline student.
MAIN_CONFIG = (4, 1)
#: Frames per clip of the public EchoNet-Synthetic release (its FileList's NumberOfFrames is wrong).
SYNTHETIC_FRAMES = 192
#: Clips whose headers are read to count a training folder's frames.
SAMPLED_HEADERS = 16
#: Check reasons that make a training clip unusable (it cannot be decoded into a window).
UNUSABLE = ("missing_video", "unreadable", "too_short")


@dataclass
class Settings:
    """Every option of a reproduce run (the CLI maps one flag to each field)."""

    dynamic: Path
    synthetic: Path
    teacher: Path
    out: Path
    teacher_arch: str | None = None
    echoclip: str | None = None
    echoclip_offline: bool = False
    echoclip_models: str = "all"       # "all" students (Fig. 3's scores by size) or the "main" one
    grid: list[tuple[int, int]] = field(default_factory=lambda: list(FULL_GRID))
    epochs: int = _DISTILL["epochs"]
    frame_size: int = 56               # the paper's half resolution (distill's own default: native)
    infer_size: int | None = None      # None: the EchoNet-Dynamic clips' own size (112)
    seq_len: int = _DISTILL["seq_len"]
    batch_size: int = _DISTILL["batch_size"]
    patience: int = _DISTILL["patience"]
    devices: int | str = _DISTILL["devices"]
    num_nodes: int = _DISTILL["num_nodes"]
    strategy: str = _DISTILL["strategy"]
    shard: tuple[int, int] | None = None
    synthetic_fps: float = 32.0
    device: str = "auto"               # label / predict / EchoCLIP: auto = cuda when available
    label_batch: int = 64
    bootstrap: int = 10000
    compat: str = "paper"
    overlays: int = 3                  # clips drawn as overlay GIFs per evaluation
    workers: int | None = None         # check worker processes (None: CPUs, at most 8)

    def __post_init__(self) -> None:
        self.dynamic, self.synthetic = Path(self.dynamic), Path(self.synthetic)
        self.teacher, self.out = Path(self.teacher), Path(self.out)
        for name in ("epochs", "frame_size", "seq_len", "batch_size", "patience", "num_nodes", "label_batch",
                     "bootstrap"):
            if int(getattr(self, name)) < 1:
                raise EchoDFKDError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.grid:
            raise EchoDFKDError("the student grid is empty")
        if not self.synthetic_fps > 0:
            raise EchoDFKDError(f"--synthetic-fps must be a positive frame rate, got {self.synthetic_fps}")
        if self.echoclip_models not in ("all", "main"):
            raise EchoDFKDError(f"--echoclip-models must be all or main, got {self.echoclip_models!r}")
        if self.compat not in ("paper", "reference"):
            raise EchoDFKDError(f"compat must be paper or reference, got {self.compat!r}")
        from echodfkd.models.student import check_frame_size  # lazy: the model module imports torch

        for what, size in (("--frame-size", self.frame_size), ("--infer-size", self.infer_size)):
            if size is not None:
                check_frame_size(size, max(b for b, _ in self.grid), what, EchoDFKDError)

    def config_name(self, blocks: int, layers: int) -> str:
        """Folder name of one student configuration."""
        return f"b{blocks}_l{layers}"

    @property
    def main_config(self) -> tuple[int, int] | None:
        """The paper's (4,1) when it is in the grid (else the report picks the lowest val loss)."""
        return MAIN_CONFIG if MAIN_CONFIG in self.grid else None


def parse_grid(text: str) -> list[tuple[int, int]]:
    """'1-4x1-4' -> the 16 (B, l) pairs; '4x1' -> [(4, 1)]; '1,2x1' -> [(1, 1), (2, 1)]."""
    from echodfkd.distill.sweep import parse_range

    m = re.fullmatch(r"\s*([\d,\s-]+)\s*[xX]\s*([\d,\s-]+)\s*", str(text))
    if not m:
        raise EchoDFKDError(f"--grid {text!r}: use BLOCKSxLAYERS with ranges or lists, e.g. 1-4x1-4 or 4x1")
    blocks, layers = parse_range(m.group(1), "blocks"), parse_range(m.group(2), "layers")
    if max(blocks) > 6:
        raise EchoDFKDError(f"--grid {text!r}: at most 6 blocks (the paper goes to 4)")
    return [(b, l) for b in blocks for l in layers]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'i/N' -> (i, N), 0-based (`echodfkd.launch.parse_shard`); None stays None."""
    return None if text is None else launch.parse_shard(text)


@dataclass
class Inputs:
    """The opened datasets and what the plan needs to know about them."""

    dynamic: Any
    synthetic: Any
    test_names: list[str]
    train_names: list[str]
    val_names: list[str]
    test_frames: int
    train_frames: int
    val_frames: int
    frames_source: str
    infer_size: int
    notes: list[str] = field(default_factory=list)
    teacher: Any = None


def open_dynamic(root: Path) -> Any:
    """Open `--dynamic`, refusing folders without human tracings or without a TEST split."""
    from echodfkd.data import TRACINGS, open_dataset

    ds = open_dataset(root)
    if not getattr(ds, "has_tracings", False):
        raise DatasetError(f"--dynamic {root}: no {TRACINGS}, so this is not an EchoNet-Dynamic folder (it looks "
                           f"like EchoNet-Synthetic or other untraced clips; pass it as --synthetic)")
    if not ds.names("TEST"):
        raise DatasetError(f"--dynamic {root}: no traced clip in the TEST split of {ds.filelist_path}")
    return ds


def open_synthetic(root: Path, fps: float, notes: list[str]) -> Any:
    """Open `--synthetic`; a folder with tracings is accepted with a note."""
    from echodfkd.data import TRACINGS, open_dataset

    ds = open_dataset(root, fps_override=fps)
    if getattr(ds, "has_tracings", False):
        notes.append(f"--synthetic {root} has {TRACINGS}: it looks like EchoNet-Dynamic, not EchoNet-Synthetic. "
                     f"The student learns from its TRAIN/VAL videos (tracings unused), which is not the "
                     f"paper's data-free setting.")
    for split in ("TRAIN", "VAL"):
        if not ds.names(split):
            raise DatasetError(f"--synthetic {root}: no clip in the {split} split of {ds.filelist_path} "
                               f"(the student trains on TRAIN and is validated on VAL)")
    return ds


def filelist_frames(ds: Any, names: list[str]) -> int | None:
    """Sum of the FileList's NumberOfFrames over `names`, or None when the column is absent or incomplete."""
    table = ds.filelist.set_index("FileName")
    if "NumberOfFrames" not in table.columns:
        return None
    values = table.loc[names, "NumberOfFrames"].to_numpy(dtype=float)
    return int(values.sum()) if np.isfinite(values).all() else None


def sampled_frames(ds: Any, names: list[str]) -> tuple[int, str]:
    """Frames of a training folder: mean header length of a few clips × clips, else 192 per clip."""
    from echodfkd.errors import VideoError

    lengths = []
    step = max(1, len(names) // SAMPLED_HEADERS)
    for name in names[::step][:SAMPLED_HEADERS]:
        try:
            lengths.append(ds.info(name).frames)
        except (VideoError, DatasetError):
            continue
    if lengths:
        return int(round(np.mean(lengths) * len(names))), f"mean header length of {len(lengths)} sampled clips"
    return SYNTHETIC_FRAMES * len(names), f"{SYNTHETIC_FRAMES} frames per clip (EchoNet-Synthetic)"


def native_size(ds: Any, names: list[str]) -> int:
    """The (square) frame size of most test clips, from the FileList, else 112."""
    table = ds.filelist.set_index("FileName")
    if {"FrameHeight", "FrameWidth"} <= set(table.columns):
        sizes = table.loc[names, ["FrameHeight", "FrameWidth"]].dropna().astype(int)
        if len(sizes):
            h, w = sizes.mode().iloc[0]
            if h == w:
                return int(h)
    return 112


def inspect_inputs(st: Settings, load_teacher_weights: bool = True) -> Inputs:
    """Open both folders and the teacher, refusing what is not what it claims; count clips and frames."""
    notes: list[str] = []
    dyn = open_dynamic(st.dynamic)
    syn = open_synthetic(st.synthetic, st.synthetic_fps, notes)
    if dyn.root.resolve() == syn.root.resolve():
        notes.append("--dynamic and --synthetic are the same folder: the student trains on its TRAIN/VAL clips "
                     "and is tested on its TEST clips.")
    test, train, val = dyn.names("TEST"), syn.names("TRAIN"), syn.names("VAL")
    test_frames = filelist_frames(dyn, test)
    source = "EchoNet-Dynamic FileList NumberOfFrames"
    if test_frames is None:
        test_frames, source = sampled_frames(dyn, test)
    if getattr(syn, "has_tracings", False) and filelist_frames(syn, train + val) is not None:
        train_frames, val_frames = filelist_frames(syn, train), filelist_frames(syn, val)
        source += "; training folder: its FileList NumberOfFrames"
    else:
        total, how = sampled_frames(syn, train + val)
        train_frames = int(round(total * len(train) / (len(train) + len(val))))
        val_frames = total - train_frames
        source += f"; training folder: {how}"
    infer = st.infer_size or native_size(dyn, test)
    from echodfkd.models.student import check_frame_size

    check_frame_size(infer, max(b for b, _ in st.grid), "test clip size (set --infer-size)", EchoDFKDError)
    teacher = check_teacher(st) if load_teacher_weights else None
    return Inputs(dyn, syn, test, train, val, int(test_frames), int(train_frames), int(val_frames), source,
                  infer, notes, teacher)


def check_teacher(st: Settings) -> Any:
    """Load the teacher checkpoint into its architecture (ModelError when it does not fit)."""
    from echodfkd.teacher.model import load_teacher

    if not st.teacher.is_file():
        raise ModelError(f"--teacher {st.teacher}: checkpoint not found (EchoNet's is "
                         f"deeplabv3_resnet50_random.pt from the EchoNet-Dynamic GitHub releases)")
    return load_teacher(st.teacher, arch=st.teacher_arch)  # its hints name --teacher-arch


def check_echoclip(st: Settings, dry_run: bool, notes: list[str]) -> None:
    """Find the EchoCLIP weights before hours of work (a dry run never downloads: it notes instead)."""
    if not st.echoclip:
        return
    from echodfkd.evaluate.echoclip.model import resolve

    if dry_run and st.echoclip.startswith("hf-hub:"):
        try:
            resolve(st.echoclip, offline=True)
        except ModelError:
            notes.append(f"EchoCLIP {st.echoclip} is not in the Hugging Face cache: the run downloads it "
                         f"first, or fails at once with --echoclip-offline")
        return
    resolve(st.echoclip, offline=st.echoclip_offline)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; under a launcher, this process's GPU."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and launch.local_rank() is not None:
        device = f"cuda:{launch.local_rank()}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EchoDFKDError(f"--device {device}: no CUDA device is visible (use --device cpu)")
    return device
