"""Torch datasets for distillation: windows of consecutive frames paired with the teacher's soft targets.

A *store* holds the clips of one split, resized to the training frame size, with their soft targets
(uint8, 0-255) stacked as channels (channel 0 = LV `masks`, channel 1 = RV `rv` when every target has it).
Clips are decoded once and kept in memory when they fit (`cache_bytes`), else decoded per item.
Everything a run needs is validated first (`check_targets`), so bad inputs stop before training starts.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from echodfkd.errors import DatasetError
from echodfkd.io.records import RecordError, TargetsMeta
from echodfkd.io.video import resize_frames, resize_masks
from echodfkd.progress import progress

META = "meta.json"
CHANNEL_KEYS = {"lv": "masks", "rv": "rv"}
DEFAULT_CACHE_BYTES = 4 * 2 ** 30


def _examples(names: list[str], k: int = 3) -> str:
    shown = ", ".join(names[:k])
    return shown + (", ..." if len(names) > k else "")


def _npy_shape(zf: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array inside an .npz without decompressing its data."""
    with zf.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
    return tuple(shape), dtype


class TargetsFolder:
    """A teacher-targets folder: `<FileName>.npz` (`masks`, optional `rv`) plus `meta.json`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: targets folder not found (run `echodfkd label` first)")
        self.meta = self._read_meta()

    def _read_meta(self) -> dict[str, Any] | None:
        path = self.root / META
        if not path.exists():
            return None
        try:
            return TargetsMeta.read(path).to_dict()
        except RecordError as exc:
            raise DatasetError(f"{path}: unreadable targets meta ({str(exc).removeprefix(f'{path}: ')})") from None

    def path(self, name: str) -> Path:
        """Path of a clip's target file (it may not exist)."""
        return self.root / f"{name}.npz"

    def header(self, name: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shapes and dtypes of the arrays in a target file, read from the headers only."""
        path = self.path(name)
        try:
            with zipfile.ZipFile(path) as zf:
                keys = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
                return {k: _npy_shape(zf, k) for k in keys}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise DatasetError(f"{path}: unreadable target file ({exc})") from None

    def load(self, name: str, channels: tuple[str, ...]) -> np.ndarray:
        """Soft targets of a clip as uint8 (T, C, H, W), one channel per entry of `channels`."""
        path = self.path(name)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = [data[CHANNEL_KEYS[c]] for c in channels]
        except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as exc:
            raise DatasetError(f"{path}: unreadable target file ({exc})") from None
        return np.stack([a.astype(np.uint8) * 255 if a.dtype == bool else a for a in arrays], axis=1)


@dataclass(frozen=True)
class TargetsCheck:
    """What `check_targets` learned: the channels every target has, each clip's frame count and size."""

    channels: tuple[str, ...]
    frames: dict[str, int]
    sizes: dict[str, tuple[int, int]]


def check_targets(dataset: Any, names: list[str], targets: TargetsFolder, split: str,
                  channels: tuple[str, ...] | None = None) -> TargetsCheck:
    """Validate a split against its targets before training; raise one clear DatasetError line."""
    if not names:
        raise DatasetError(f"{dataset.filelist_path}: split {split} has no clips (check the Split column)")
    missing = [n for n in names if not targets.path(n).is_file()]
    if missing:
        raise DatasetError(f"{targets.root}: no target for {len(missing)} of {len(names)} {split} clips "
                           f"({_examples([m + '.npz' for m in missing])}); run `echodfkd label` on the dataset")
    missing_videos = [n for n in names if not dataset.video_path(n).is_file()]
    if missing_videos:
        raise DatasetError(f"{dataset.root / 'Videos'}: {len(missing_videos)} {split} video(s) missing "
                           f"({_examples([m + '.avi' for m in missing_videos])})")
    has_rv, frames, sizes = [], {}, {}
    for name in progress(names, desc=f"checking {split} targets", unit="clip"):
        head = targets.header(name)
        path = targets.path(name)
        if "masks" not in head:
            raise DatasetError(f"{path}: no 'masks' array (found: {', '.join(sorted(head)) or 'none'})")
        shape, dtype = head["masks"]
        if len(shape) != 3:
            raise DatasetError(f"{path}: 'masks' must be (T, H, W), got shape {shape}")
        if dtype not in (np.dtype(np.uint8), np.dtype(bool)):
            raise DatasetError(f"{path}: 'masks' must be uint8 soft masks (0-255), got {dtype}")
        if "rv" in head and head["rv"][0] != shape:
            raise DatasetError(f"{path}: 'rv' has shape {head['rv'][0]} but 'masks' has {shape}")
        info = dataset.info(name)
        if shape[0] != info.frames:
            raise DatasetError(f"{path}: {shape[0]} target frames but {dataset.video_path(name)} has "
                               f"{info.frames} (targets made from another version of the video?)")
        if shape[1:] != (info.height, info.width):
            raise DatasetError(f"{path}: targets are {shape[2]}x{shape[1]} but {dataset.video_path(name)} "
                               f"is {info.width}x{info.height}")
        has_rv.append("rv" in head)
        frames[name] = int(shape[0])
        sizes[name] = (int(shape[1]), int(shape[2]))
    if channels is None:
        channels = ("lv", "rv") if all(has_rv) else ("lv",)
    elif "rv" in channels and not all(has_rv):
        lacking = [n for n, r in zip(names, has_rv) if not r]
        raise DatasetError(f"{targets.root}: {len(lacking)} {split} target(s) lack an 'rv' array "
                           f"({_examples([n + '.npz' for n in lacking])}) but the run trains LV+RV")
    _check_meta_channels(targets, channels)
    return TargetsCheck(tuple(channels), frames, sizes)


def _check_meta_channels(targets: TargetsFolder, channels: tuple[str, ...]) -> None:
    """The meta's declared channels (when it declares any) must match what the files hold."""
    declared = (targets.meta or {}).get("channels")
    if declared is None:
        return
    names = list(declared) if isinstance(declared, (dict, list)) else [declared]
    declared = ["lv" if str(c).lower() in ("masks", "lv") else str(c).lower() for c in names]
    if "rv" in declared and "rv" not in channels:
        raise DatasetError(f"{targets.root / META}: meta declares channels {declared} but the target files "
                           f"hold no 'rv' array")


class ClipStore:
    """The clips of one split at the training frame size, with their targets; cached in memory when they fit."""

    def __init__(self, dataset: Any, names: list[str], targets: TargetsFolder, check: TargetsCheck,
                 frame_size: int | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 desc: str = "decoding clips"):
        self.dataset, self.names, self.targets = dataset, list(names), targets
        self.channels, self.frame_size = check.channels, frame_size
        if frame_size is None:
            sizes = {check.sizes[n] for n in self.names}
            if len(sizes) > 1:
                raise DatasetError(f"{dataset.root}: clips have different sizes "
                                   f"({', '.join(f'{w}x{h}' for h, w in sorted(sizes)[:3])}); "
                                   f"pass a frame size to train at")
            self.size = sizes.pop()
        else:
            self.size = (frame_size, frame_size)
        self._frames = {n: check.frames[n] for n in self.names}
        h, w = self.size
        need = sum(self._frames.values()) * h * w * (1 + len(self.channels))
        self.cached = need <= cache_bytes
        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = None
        if self.cached:
            self._cache = [self._decode(i) for i in progress(range(len(self.names)), desc=desc,
                                                             unit="clip")]

    def __len__(self) -> int:
        return len(self.names)

    def _decode(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        name = self.names[i]
        frames, _ = self.dataset.video(name)
        targets = self.targets.load(name, self.channels)
        if frames.shape[0] != targets.shape[0]:
            raise DatasetError(f"{self.targets.path(name)}: {targets.shape[0]} target frames but "
                               f"{self.dataset.video_path(name)} decodes {frames.shape[0]}")
        frames = resize_frames(frames, self.size)
        targets = np.stack([resize_masks(targets[:, c], self.size) for c in range(targets.shape[1])], axis=1)
        return np.ascontiguousarray(frames), np.ascontiguousarray(targets)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames uint8 (T, H, W) and targets uint8 (T, C, H, W) of clip `i`."""
        return self._cache[i] if self._cache is not None else self._decode(i)

    def length(self, i: int) -> int:
        """Number of frames of clip `i`."""
        return self._frames[self.names[i]]


def window(frames: np.ndarray, targets: np.ndarray, start: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`seq_len` frames from `start` as tensors (L, 1, H, W) and (L, C, H, W); short clips are padded at the start."""
    t = frames.shape[0]
    if t < seq_len:
        pad = seq_len - t  # repeat the first frame: the student sees a still heart before the clip starts
        frames = np.concatenate([np.repeat(frames[:1], pad, axis=0), frames])
        targets = np.concatenate([np.repeat(targets[:1], pad, axis=0), targets])
        start = 0
    x = torch.from_numpy(np.ascontiguousarray(frames[start:start + seq_len]))[:, None]
    y = torch.from_numpy(np.ascontiguousarray(targets[start:start + seq_len]))
    return x, y


class TrainWindows(Dataset):
    """One random window of `seq_len` consecutive frames per clip per epoch (`clips_per_epoch` items)."""

    def __init__(self, store: ClipStore, seq_len: int, clips_per_epoch: int | None = None):
        if seq_len < 1:
            raise ValueError("seq_len must be >= 1")
        self.store, self.seq_len = store, seq_len
        self.items = clips_per_epoch or len(store)

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        # (clip, start) pairs come from a WindowSampler; a bare index draws its start from torch's RNG.
        index, start = index if isinstance(index, tuple) else (index, None)
        frames, targets = self.store.get(index % len(self.store))
        if start is None:
            start = int(torch.randint(0, max(frames.shape[0] - self.seq_len, 0) + 1, (1,)).item())
        return window(frames, targets, start, self.seq_len)


class WindowSampler(Sampler[tuple[int, int]]):
    """Each epoch's clip order and window starts for `TrainWindows`, drawn from (seed, epoch) alone.

    The sampler keeps no state beyond the epoch, so a run resumed at epoch k draws what an uninterrupted
    run draws there, and DataLoader workers (persistent or not) cannot change the windows.
    """

    def __init__(self, windows: TrainWindows, seed: int = 0):
        self.windows, self.seed, self.epoch = windows, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose windows the next iteration yields (Lightning calls this every epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.windows)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        store, seq_len = self.windows.store, self.windows.seq_len
        for i in torch.randperm(len(self.windows), generator=gen).tolist():
            hi = max(store.length(i % len(store)) - seq_len, 0)
            yield i, int(torch.randint(0, hi + 1, (1,), generator=gen).item())


class FixedWindows(Dataset):
    """Deterministic windows for validation: `per_clip` evenly spaced windows (1 = the centred one)."""

    def __init__(self, store: ClipStore, seq_len: int, per_clip: int = 1):
        if per_clip < 1:
            raise ValueError("per_clip must be >= 1")
        self.store, self.seq_len = store, seq_len
        self.index: list[tuple[int, int]] = []
        for i in range(len(store)):
            hi = max(store.length(i) - seq_len, 0)
            if per_clip == 1:
                starts = [hi // 2]
            else:
                starts = sorted({int(round(s)) for s in np.linspace(0, hi, per_clip)})
            self.index.extend((i, s) for s in starts)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i, start = self.index[index]
        frames, targets = self.store.get(i)
        return window(frames, targets, start, self.seq_len)
