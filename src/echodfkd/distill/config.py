"""Distillation run settings: one dataclass, recorded verbatim in the run's config.json."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from echodfkd.distill.module import INITS, SCHEDULES

ARCH_KEYS = ("blocks", "layers", "filters", "skip", "residual")


@dataclass
class DistillConfig:
    """Every setting of a distillation run (architecture, optimisation, data, hardware)."""

    # student architecture
    blocks: int = 4
    layers: int = 1
    filters: int = 12
    skip: bool = False
    residual: bool = False
    init: str = "default"
    # optimisation (reference defaults: BCE on soft targets, Adam 1e-3, batch 32, 25-frame windows)
    seq_len: int = 25
    frame_size: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "none"
    dice_weight: float = 0.0
    augment: float = 1.0          # strength of the echo augmentations (data/augment.py); 0 = off
    epochs: int = 400
    max_time: str | None = None
    patience: int = 10
    clips_per_epoch: int | None = None
    val_windows: int = 1
    seed: int = 0
    # data
    train_split: str = "TRAIN"
    val_split: str = "VAL"
    channels: str | None = None
    infer_size: int | None = None
    cache_gb: float = 4.0
    workers: int = 0
    # hardware
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        for name in ("blocks", "layers", "filters", "seq_len", "batch_size", "epochs", "val_windows", "num_nodes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.dice_weight < 0:
            raise ValueError("lr must be > 0 and dice_weight >= 0")
        if not 0.0 <= self.augment <= 2.0:
            raise ValueError(f"augment strength must be in [0, 2], got {self.augment}")
        if self.channels not in (None, "lv", "lv,rv"):
            raise ValueError(f"channels must be 'lv', 'lv,rv' or None (auto), got {self.channels!r}")
        if self.infer_size is None and self.frame_size is not None:
            self.infer_size = self.frame_size  # infer where the student was trained (and calibrated)
        if self.max_time is not None:
            self.max_time = format_duration(parse_duration(self.max_time))
        k = 2 ** (self.blocks - 1)
        for name in ("frame_size", "infer_size"):
            size = getattr(self, name)
            if size is not None and (size < k or size % k):
                raise ValueError(f"{name} {size} must be a multiple of {k} for a {self.blocks}-block student")

    @classmethod
    def from_kwargs(cls, **kw: Any) -> "DistillConfig":
        """Build from keyword arguments, naming any unknown setting."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kw) - known)
        if unknown:
            raise TypeError(f"unknown distillation setting(s): {', '.join(unknown)}")
        return cls(**kw)

    def student(self, out_channels: int) -> dict[str, Any]:
        """Keyword arguments of the Student."""
        return dict(blocks=self.blocks, layers=self.layers, filters=self.filters, skip=self.skip,
                    residual=self.residual, out_channels=out_channels)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every setting."""
        return asdict(self)


def parse_duration(value: Any) -> timedelta:
    """A duration from seconds (number or string), a timedelta, or 'DD:HH:MM:SS' / 'HH:MM:SS' / 'MM:SS'."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        if re.fullmatch(r"\d+(\.\d*)?", text):
            seconds = float(text)
        elif re.fullmatch(r"\d+(:\d+){1,3}", text):
            parts = [int(p) for p in text.split(":")]
            seconds = 0.0
            for p, unit in zip(reversed(parts), (1, 60, 3600, 86400)):
                seconds += p * unit
        else:
            raise ValueError(f"max_time {value!r}: use seconds or DD:HH:MM:SS")
    if seconds <= 0:
        raise ValueError(f"max_time must be positive, got {value!r}")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """'DD:HH:MM:SS' (Lightning's max_time string format), seconds rounded up."""
    total = int(-(-delta.total_seconds() // 1))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{seconds:02d}"


#: Loss choices of the search and the Dice weight each means.
LOSSES = {"bce": 0.0, "bce+dice": 1.0}
#: Settings of the machine, not of the model: a search's best trial does not carry them to another run.
HARDWARE_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "workers", "cache_gb", "precision")
#: What a run's config.json records in `training` beyond the settings (its outcome).
_OUTCOME_KEYS = ("epochs_trained", "stopped_early", "best_val_loss", "best_val_bce", "best_checkpoint")


def load_settings(path: str | Path) -> dict[str, Any]:
    """Distillation settings from a JSON file: a search's best.json, a run's config.json, or a flat dict.

    A flat dict may hold any DistillConfig field and `loss` ("bce" or "bce+dice"); anything else is an
    error naming the file and the keys. A best.json gives its best trial's `settings` (or, from an older
    search, its searched `params`); a run's config.json gives its `training` settings without the hardware.
    """
    from echodfkd.errors import EchoDFKDError

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EchoDFKDError(f"{path}: not a readable JSON settings file ({exc})") from None
    if not isinstance(data, dict):
        raise EchoDFKDError(f"{path}: settings must be a JSON object")
    if "best" in data:  # echodfkd search's best.json
        best = data["best"]
        if not isinstance(best, dict):
            raise EchoDFKDError(f"{path}: the search has no complete trial yet")
        flat = best.get("settings") or best.get("params") or {}
    elif isinstance(data.get("training"), dict):  # a run's config.json
        flat = {k: v for k, v in data["training"].items() if k not in HARDWARE_KEYS + _OUTCOME_KEYS}
    else:
        flat = data
    known = {f.name for f in fields(DistillConfig)}
    unknown = sorted(set(flat) - known - {"loss"})
    if unknown:
        raise EchoDFKDError(f"{path}: unknown setting(s) {', '.join(unknown)} (known: the distill flags, "
                            f"spelt with underscores, and loss)")
    for f in fields(DistillConfig):
        if f.name in flat and not _of_type(flat[f.name], str(f.type)):
            raise EchoDFKDError(f"{path}: setting {f.name} must be {str(f.type).replace(' | ', ' or ')}, got "
                                f"{flat[f.name]!r}")
    out = dict(flat)
    if "loss" in out:
        loss = out.pop("loss")
        if loss not in LOSSES:
            raise EchoDFKDError(f"{path}: loss {loss!r} must be one of {', '.join(LOSSES)}")
        out.setdefault("dice_weight", LOSSES[loss])
    return out


def _of_type(value: Any, annotation: str) -> bool:
    """Whether a JSON value fits a DistillConfig annotation such as 'int', 'float' or 'str | None'."""
    for name in annotation.replace(" ", "").split("|"):
        if (name == "None" and value is None) or (name == "bool" and isinstance(value, bool)):
            return True
        if name == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if name == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if name == "str" and isinstance(value, str):
            return True
    return False
