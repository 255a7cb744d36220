"""Train a teacher the EchoNet way: the two traced frames of each TRAIN clip, masks from the tracings.

As in EchoNet-Dynamic: BCE-with-logits on the 1-channel output against the traced LV mask, the input
normalised with the train set's mean/std, model selection on VAL. Differences, for CPU speed: Adam
(lr 1e-3) by default instead of EchoNet's SGD (lr 1e-5 on a pixel-*summed* loss, which is a far larger
step on our pixel-averaged loss); `optimizer="sgd"` gives momentum 0.9 and weight decay 1e-5 like
EchoNet. The best epoch is chosen by VAL Dice pooled over the traced frames (2*sum(I) / sum(|P|+|T|)).
Echo augmentations (data/augment.py: zoom, rotation and shift on frames and masks; gain, gamma,
contrast, depth ramp, blur, noise, speckle, sector edge and erasing on frames) are on by default. On a
phantom (a GroundTruth/ folder), `truth_every=K` trains on every K-th frame of each TRAIN clip with the
exact LV masks instead of the two traced frames: a phantom-only teacher that has seen the whole cycle.
Validation stays on the traced VAL frames. `channel="rv"` makes a second, RV teacher from a phantom's
exact RV masks (or, with `masks_dir`, from a user's masks in the targets format), validated on VAL's
masks: the teacher `label --channel rv` needs for a 2-channel student. The checkpoint is EchoNet's
format, so `load_teacher` reads ours and theirs; it is rewritten (atomically) whenever VAL improves.

Measured on a 160-clip phantom (238 TRAIN / 42 VAL traced frames, 112x112), Adam, batch 16:
lraspp_mobilenet_v3_large reaches VAL Dice 0.91 after 40 CPU-seconds and 0.94 after ~120, against
0.87 and 0.91 for deeplabv3_mobilenet_v3_large (7.8 vs 12.6 CPU-s per epoch), so the light default is
LR-ASPP; 15 epochs take ~70 s on 2 cores (best VAL Dice 0.942).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from echodfkd.data.augment import AugmentSettings, EchoAugment
from echodfkd.errors import DatasetError, EchoDFKDError
from echodfkd.teacher.model import Teacher, build_segmenter, save_echonet_checkpoint


#: Teacher channels: the LV (traced frames, or a phantom's LV truth) or the RV (a phantom's RV truth).
CHANNELS = ("lv", "rv")
#: Default frame step of RV training: phantom clips move smoothly, so every 4th frame sees the whole cycle.
RV_TRUTH_EVERY = 4


@dataclass
class TracedFrames:
    """The traced frames of one split: uint8 frames and bool masks (N, H, W), with their origin."""

    frames: np.ndarray
    masks: np.ndarray
    origin: list[tuple[str, int]]                                  # (FileName, frame index)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (FileName, reason)


@dataclass
class TrainResult:
    """Outcome of `train_teacher`."""

    path: Path
    arch: str
    best_epoch: int
    best_val_dice: float
    validated_on: str
    train_frames: int
    val_frames: int
    seconds: float
    history: list[dict[str, float]]
    skipped: list[tuple[str, str]]


def _clip_traced(dataset, name: str, size: int | None) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(frame, mask, index) of a clip's ED and ES frames (first annotator)."""
    from echodfkd.io.video import resize_frames, resize_masks

    video, _ = dataset.video(name)
    pairs = []
    for f in dataset.traced_frames(name):
        if f >= len(video):
            raise DatasetError(f"{dataset.video_path(name)}: traced frame {f} is past the video's {len(video)} frames")
        mask = dataset.trace_mask(name, f, shape=video.shape[1:])
        if size is not None:
            pairs.append((resize_frames(video[f:f + 1], size)[0], resize_masks(mask[None], size)[0], int(f)))
        else:
            pairs.append((video[f], mask, int(f)))
    return pairs


def _clip_truth(dataset, name: str, size: int | None, every: int,
                key: str = "lv") -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(frame, mask, index) of every `every`-th frame of a phantom clip with its exact `key` (lv/rv) mask."""
    from echodfkd.io.video import resize_frames, resize_masks

    truth = dataset.ground_truth(name)
    if truth is None or key not in truth:
        raise DatasetError(f"{dataset.root}: {name} has no {key.upper()} ground truth (GroundTruth/{name}.npz "
                           f"key '{key}'); dense-truth training needs a phantom folder")
    video, _ = dataset.video(name)
    truth_masks = truth[key].astype(bool)
    if truth_masks.shape != video.shape:
        raise DatasetError(f"{dataset.video_path(name)}: ground truth {truth_masks.shape} does not match the "
                           f"video {video.shape}")
    index = np.arange(0, len(video), every)
    frames, masks = video[index], truth_masks[index]
    if size is not None:
        frames, masks = resize_frames(frames, size), resize_masks(masks, size)
    return [(f, m, int(i)) for f, m, i in zip(frames, masks, index)]


def load_truth_frames(dataset, split: str, every: int, size: int | None = None, workers: int = 2,
                      key: str = "lv") -> TracedFrames:
    """Every `every`-th frame of each clip of `split` with the phantom's exact masks (GroundTruth/, lv or rv)."""
    return _load_pairs(dataset, split, lambda name: _clip_truth(dataset, name, size, every, key), workers)


def load_traced_frames(dataset, split: str, size: int | None = None, workers: int = 2) -> TracedFrames:
    """ED and ES frames of every traced clip of `split` with the first annotator's masks.

    Clips whose video or traces are unusable are skipped and listed (decoding runs in `workers` threads).
    """
    return _load_pairs(dataset, split, lambda name: _clip_traced(dataset, name, size), workers)


def _load_pairs(dataset, split: str, pairs_of, workers: int) -> TracedFrames:
    """(frame, mask) pairs of every clip of `split`; unusable clips are skipped and listed (threads decode)."""
    from concurrent.futures import ThreadPoolExecutor

    def job(name: str):
        try:
            return name, pairs_of(name), None
        except EchoDFKDError as exc:
            return name, [], str(exc)

    frames, masks, origin, skipped = [], [], [], []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for name, pairs, error in pool.map(job, dataset.names(split)):
            if error is not None:
                skipped.append((name, error))
            for frame, mask, index in pairs:
                frames.append(frame)
                masks.append(mask)
                origin.append((name, index))
    if frames and len({f.shape for f in frames}) > 1:
        raise DatasetError(f"{dataset.root}: {split} frames differ in size "
                           f"{sorted({f.shape for f in frames})}; pass a common size (--size)")
    empty = np.zeros((0, 1, 1), dtype=np.uint8)
    return TracedFrames(np.stack(frames) if frames else empty,
                        np.stack(masks).astype(bool) if masks else empty.astype(bool), origin, skipped)


def _clip_masks(dataset, folder, name: str, size: int | None, every: int,
                channel: str) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(frame, mask, index) of every `every`-th frame of a clip with its mask from a targets-format folder."""
    from echodfkd.io.video import resize_frames, resize_masks

    path = folder.path(name)
    if not path.is_file():
        raise DatasetError(f"{path}: no mask file")
    video, _ = dataset.video(name)
    soft = folder.load(name, (channel,))[:, 0]
    if soft.shape != video.shape:
        raise DatasetError(f"{path}: masks {soft.shape} do not match the video {video.shape}")
    index = np.arange(0, len(video), every)
    frames, masks = video[index], soft[index] >= 128  # soft uint8: at least half
    if size is not None:
        frames, masks = resize_frames(frames, size), resize_masks(masks, size)
    return [(f, m, int(i)) for f, m, i in zip(frames, masks, index)]


def load_mask_frames(dataset, split: str, masks_dir: str | os.PathLike, every: int, size: int | None = None,
                     channel: str = "rv", workers: int = 2) -> TracedFrames:
    """Every `every`-th frame of each clip of `split` with its `channel` mask from a targets-format folder
    (`<FileName>.npz`, key `masks` for lv or `rv`); clips without a file are skipped and listed."""
    from echodfkd.data.clips import TargetsFolder

    folder = TargetsFolder(masks_dir)
    return _load_pairs(dataset, split, lambda name: _clip_masks(dataset, folder, name, size, every, channel), workers)


def _training_frames(ds, channel: str, masks_dir: str | os.PathLike | None, truth_every: int | None,
                     size: int | None, train_split: str, val_split: str) -> tuple[TracedFrames, TracedFrames]:
    """(train, val) frames: from a masks folder, a phantom's RV truth, its dense LV truth, or the tracings."""
    if masks_dir is not None:
        if not Path(masks_dir).is_dir():
            raise DatasetError(f"{masks_dir}: masks folder not found (<FileName>.npz files, the targets format)")
        every = truth_every or RV_TRUTH_EVERY
        train = load_mask_frames(ds, train_split, masks_dir, every, size, channel)
        val = load_mask_frames(ds, val_split, masks_dir, every, size, channel)
    elif channel == "rv":
        if not getattr(ds, "has_ground_truth", False):
            raise DatasetError(f"{ds.root}: an RV teacher learns from a phantom's RV ground truth "
                               f"(GroundTruth/*.npz key 'rv') or from --masks DIR; this folder has no GroundTruth/")
        every = truth_every or RV_TRUTH_EVERY
        train = load_truth_frames(ds, train_split, every, size, key="rv")
        val = load_truth_frames(ds, val_split, every, size, key="rv")
    elif not getattr(ds, "has_tracings", False):
        raise DatasetError(f"{ds.root}: teacher training needs human tracings (VolumeTracings.csv); "
                           "this folder has none")
    else:
        if truth_every is not None:
            if not getattr(ds, "has_ground_truth", False):
                raise DatasetError(f"{ds.root}: dense-truth training needs a phantom's GroundTruth/ folder; "
                                   "this folder has none")
            train = load_truth_frames(ds, train_split, truth_every, size)
        else:
            train = load_traced_frames(ds, train_split, size)
        val = load_traced_frames(ds, val_split, size) if len(train.frames) >= 2 else train
    if len(train.frames) < 2 and masks_dir is None and channel == "lv" and truth_every is None:
        raise DatasetError(f"{ds.root}: {train_split} has {len(train.frames) // 2} usable traced clip(s); "
                           "teacher training needs at least one")
    if len(train.frames) < 2:
        where = f" with a mask in {masks_dir}" if masks_dir is not None else ""
        raise DatasetError(f"{ds.root}: {train_split} has {len(train.frames)} usable training frame(s){where}; "
                           "teacher training needs at least 2")
    return train, val


def evaluate_teacher(teacher: Teacher, frames: np.ndarray, masks: np.ndarray, batch_size: int = 64) -> dict[str, float]:
    """Mean BCE loss and Dice pooled over all frames (2*sum(I) / (sum(P) + sum(T))), logit > 0 as foreground."""
    teacher.eval()
    inter = pred = true = 0.0
    loss = 0.0
    with torch.inference_mode():
        for i in range(0, len(frames), batch_size):
            logits = teacher(frames[i:i + batch_size])
            target = torch.as_tensor(masks[i:i + batch_size], device=logits.device).float()
            loss += F.binary_cross_entropy_with_logits(logits, target, reduction="sum").item()
            p = logits > 0
            inter += (p & (target > 0)).sum().item()
            pred += p.sum().item()
            true += target.sum().item()
    dice = 2 * inter / (pred + true) if pred + true > 0 else 1.0
    return {"loss": loss / max(1, masks.size), "dice": dice}


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True, leave=True,
                disable=os.environ.get("ECHODFKD_QUIET") == "1")


def train_teacher(data_root: str | os.PathLike, arch: str, out: str | os.PathLike, epochs: int = 10,
                  batch_size: int = 16, lr: float | None = None, size: int | None = None,
                  device: str | torch.device = "cpu", optimizer: str = "adam", augment: float = 1.0,
                  mean: Sequence[float] | float | None = None, std: Sequence[float] | float | None = None,
                  seed: int = 0, train_split: str = "TRAIN", val_split: str = "VAL",
                  max_seconds: float | None = None, truth_every: int | None = None,
                  channel: str = "lv", masks_dir: str | os.PathLike | None = None) -> TrainResult:
    """Train a 1-channel `arch` segmenter on the traced frames of `train_split`; save the best VAL-Dice epoch.

    `mean`/`std` default to the training frames' statistics (EchoNet's recipe). `max_seconds` stops
    after the epoch that crosses that wall-clock budget. `augment` is the augmentation strength (0 = off);
    `truth_every=K` trains on every K-th frame with a phantom's exact masks (see the module docstring).
    `channel="rv"` trains an RV teacher on a phantom's exact RV masks (every `truth_every`-th frame, default
    RV_TRUTH_EVERY), train and validation alike: there are no RV tracings. `masks_dir` (a targets-format
    folder, e.g. a user's RV masks) replaces the phantom truth or the tracings for `channel`, same frame step.
    """
    from echodfkd.data import open_dataset

    if epochs < 1 or batch_size < 1:
        raise EchoDFKDError(f"epochs and batch size must be >= 1 (got {epochs}, {batch_size})")
    if truth_every is not None and truth_every < 1:
        raise EchoDFKDError(f"dense-truth step must be >= 1 frame, got {truth_every}")
    augment = float(augment)
    if not 0.0 <= augment <= 2.0:
        raise EchoDFKDError(f"augmentation strength must be in [0, 2], got {augment}")
    if optimizer not in ("adam", "sgd"):
        raise EchoDFKDError(f"unknown optimizer {optimizer!r} (adam or sgd)")
    if channel not in CHANNELS:
        raise EchoDFKDError(f"unknown teacher channel {channel!r} ({' or '.join(CHANNELS)})")
    start = time.perf_counter()
    ds = open_dataset(data_root)
    train, val = _training_frames(ds, channel, masks_dir, truth_every, size, train_split, val_split)
    validated_on = val_split
    if len(val.frames) == 0:
        val, validated_on = train, train_split   # nothing to validate on: select on TRAIN (reported)
    if mean is None or std is None:
        pix = train.frames.astype(np.float64)
        mean = float(pix.mean()) if mean is None else mean
        std = (float(pix.std()) or 1.0) if std is None else std

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    teacher = Teacher(build_segmenter(arch), arch=arch, mean=mean, std=std).to(device)
    for module in teacher.modules():
        # torchvision's MobileNetV3 uses BN momentum 0.01 (long ImageNet runs); over the few hundred
        # steps of a teacher run the running statistics would lag so far that eval-mode output is flat.
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.1
    if optimizer == "adam":
        opt = torch.optim.Adam(teacher.parameters(), lr=lr or 1e-3)
    else:
        opt = torch.optim.SGD(teacher.parameters(), lr=lr or 1e-2, momentum=0.9, weight_decay=1e-5)

    aug = EchoAugment(AugmentSettings(strength=augment)) if augment > 0 else None
    x_all = torch.from_numpy(train.frames).float()
    y_all = torch.from_numpy(train.masks).float()
    n = len(x_all)
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"dice": -math.inf}
    out = Path(out)
    for epoch in range(1, epochs + 1):
        teacher.train()
        order = torch.randperm(n, generator=gen)
        batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches.pop()   # BatchNorm cannot train on a single sample (DeepLab's pooled branch is 1x1)
        bar = _bar(len(batches), f"epoch {epoch}/{epochs}")
        tic, cpu, total = time.perf_counter(), time.process_time(), 0.0
        for k, idx in enumerate(batches, 1):
            x, y = x_all[idx], y_all[idx]
            if aug is not None:
                with torch.no_grad():
                    xa, ya = aug(x[:, None], y[:, None, None])
                x, y = xa[:, 0], ya[:, 0, 0].clamp_(0.0, 1.0)
            logits = teacher(x.to(device))
            loss = F.binary_cross_entropy_with_logits(logits, y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            bar.set_postfix_str(f"loss {total / k:.4f}", refresh=False)
            bar.update(1)
        scores = evaluate_teacher(teacher, val.frames, val.masks, batch_size=max(batch_size, 32))
        record = {"epoch": epoch, "train_loss": total / max(1, len(batches)), "val_loss": scores["loss"],
                  "val_dice": scores["dice"], "seconds": time.perf_counter() - tic,
                  "cpu_seconds": time.process_time() - cpu}
        history.append(record)
        improved = scores["dice"] > best["dice"]
        bar.set_postfix_str(f"loss {record['train_loss']:.4f} val Dice {scores['dice']:.4f}"
                            + (" *" if improved else ""))
        bar.close()
        if improved:
            best = {"dice": scores["dice"], "loss": scores["loss"], "epoch": epoch,
                    "state": {k: v.detach().cpu().clone() for k, v in teacher.model.state_dict().items()}}
            _save(teacher, out, best, record, history, validated_on, complete=False, channel=channel)
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    teacher.model.load_state_dict(best["state"])
    _save(teacher, out, best, history[-1], history, validated_on, complete=True, channel=channel)
    return TrainResult(path=out, arch=arch, best_epoch=best["epoch"], best_val_dice=best["dice"],
                       validated_on=validated_on, train_frames=len(train.frames), val_frames=len(val.frames),
                       seconds=time.perf_counter() - start, history=history,
                       skipped=train.skipped + (val.skipped if val is not train else []))


def _save(teacher: Teacher, out: Path, best: dict, last: dict, history: list[dict], validated_on: str,
          complete: bool, channel: str = "lv") -> None:
    """Write the best weights so far (`best["state"]`, not the live ones) in EchoNet's format."""
    save_echonet_checkpoint(teacher, out, epoch=best["epoch"], best_loss=best["loss"], loss=last["val_loss"],
                            state_dict=best["state"], val_dice=float(best["dice"]), validated_on=validated_on,
                            complete=complete, history=[{k: float(v) for k, v in h.items()} for h in history],
                            channel=channel)
