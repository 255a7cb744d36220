"""Checks a distillation run makes before it trains: the data's sizes and lengths, a resumed run's
architecture, teacher and checkpoint. Each failure is one line naming the file or the flag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from echodfkd.data.clips import TargetsCheck, TargetsFolder
from echodfkd.distill.config import ARCH_KEYS, DistillConfig, flag
from echodfkd.errors import DatasetError, ModelError
from echodfkd.io.records import StudentConfig
from echodfkd.models.student import CONFIG_NAME, check_frame_size


def _identity(meta: dict[str, Any] | None) -> dict[str, Any]:
    """The teacher(s) a targets meta names: architecture and weights hash per channel (not paths or counts)."""
    meta = meta or {}
    keys = ("arch", "weights_hash")
    if isinstance(meta.get("channels"), dict):
        return {c: {k: r.get(k) for k in keys} for c, r in meta["channels"].items() if isinstance(r, dict)}
    if isinstance(meta.get("teacher"), dict):
        return {k: meta["teacher"].get(k) for k in keys}
    return {k: v for k, v in meta.items() if any(s in k.lower() for s in ("teacher", "hash", "sha", "arch"))}


def check_resume(run: Path, cfg: DistillConfig, targets: TargetsFolder) -> None:
    """A resumed run must keep its architecture and its teacher."""
    path = run / CONFIG_NAME
    if not path.is_file():
        return
    old = StudentConfig.read(path).to_dict()
    changed = [f"{k}={old.get(k)}->{getattr(cfg, k)}" for k in ARCH_KEYS if k in old and old[k] != getattr(cfg, k)]
    if changed:
        raise ModelError(f"{path}: cannot resume with a different architecture ({', '.join(changed)}); "
                         f"use a new output folder")
    before = _identity((old.get("data") or {}).get("targets_meta"))
    now = _identity(targets.meta)
    if before and before != now:
        raise DatasetError(f"{targets.root / 'meta.json'}: targets come from another teacher than the run "
                           f"being resumed ({path} records {before})")


def check_sizes(cfg: DistillConfig, dataset: Any, checks: dict[str, TargetsCheck]) -> None:
    """Native sizes the student will see (training without --frame-size, calibration without --infer-size)."""
    for split, check in checks.items():
        if (cfg.frame_size is None and split != "calibration") or (cfg.infer_size is None and split == "calibration"):
            for name, (h, w) in check.sizes.items():
                try:
                    check_frame_size(h, cfg.blocks)
                    check_frame_size(w, cfg.blocks)
                except ValueError:
                    option = flag("infer_size" if split == "calibration" else "frame_size")
                    raise DatasetError(f"{dataset.video_path(name)}: {w}x{h} frames are not divisible by "
                                       f"{2 ** (cfg.blocks - 1)} for a {cfg.blocks}-block student; pass {option} "
                                       f"(e.g. 112)") from None


def check_seq_len(cfg: DistillConfig, check: TargetsCheck) -> None:
    """Windows longer than every training clip would be mostly padding: refused."""
    longest = max(check.frames.values(), default=0)
    if longest and cfg.seq_len > longest:
        raise DatasetError(f"{flag('seq_len')} {cfg.seq_len}: longer than every {cfg.train_split} clip (the longest "
                           f"has {longest} frames); use at most {longest}")


def check_checkpoint(path: Path) -> None:
    """A checkpoint to resume from must load (a truncated file is one line, not Lightning's traceback)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to load means the same thing: unreadable
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise ModelError(f"{path}: unreadable checkpoint ({reason}); delete {path.parent} to start the run "
                         f"afresh") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ModelError(f"{path}: not a Lightning checkpoint (no state_dict); delete {path.parent} to start the "
                         f"run afresh")
