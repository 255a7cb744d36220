"""Distillation run settings: one dataclass, recorded verbatim in the run's config.json.

`DistillConfig` is the one place a setting's default lives: its field metadata (help, choices, lower
bound, flag name, help group) also generates the `distill`/`sweep`/`search` flags (commands/distill.py),
and reproduce and the demo start from its defaults. This module is light (no torch): `--help` imports it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

ARCH_KEYS = ("blocks", "layers", "filters", "skip", "residual")
INITS = ("default", "xavier", "kaiming", "orthogonal")
SCHEDULES = ("none", "cosine", "step")
CHANNELS = ("lv", "lv,rv")
#: The shared precision vocabulary, and what each means to Lightning ("auto": bf16 where the hardware has it).
PRECISIONS = ("fp32", "bf16", "auto")
LIGHTNING_PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed"}
#: Lightning's spellings, accepted one more release with a warning.
DEPRECATED_PRECISIONS = {"bf16-mixed": "bf16", "32-true": "fp32", "32": "fp32"}
#: Help groups of the generated flags, in --help order.
GROUPS = ("student", "optimisation", "data", "hardware")


def setting(default: Any, help: str, group: str, *, minimum: float | None = None, maximum: float | None = None,
            choices: tuple[Any, ...] | None = None, flag: str | None = None, metavar: str | None = None,
            kind: str | None = None) -> Any:
    """A DistillConfig field whose metadata also describes its command-line flag.

    `minimum`/`maximum` bound a number (None: no bound; a None value always passes), `kind` names a
    special parser ("size": a frame size, "duration": seconds or DD:HH:MM:SS, "devices": an int or a name).
    """
    meta = dict(help=help, group=group, minimum=minimum, maximum=maximum, choices=choices, flag=flag,
                metavar=metavar, kind=kind)
    return field(default=default, metadata=meta)


@dataclass
class DistillConfig:
    """Every setting of a distillation run (architecture, optimisation, data, hardware)."""

    # student architecture (blocks/layers: their flags are the commands' own, a sweep takes ranges)
    blocks: int = setting(4, "B: encoder blocks", "student", minimum=1)
    layers: int = setting(1, "l: ConvLSTM layers per block", "student", minimum=1)
    filters: int = setting(12, "width F of the first block (F*2^b after)", "student", minimum=1)
    skip: bool = setting(False, "U-Net skip connections (not in the reference)", "student")
    residual: bool = setting(False, "residual connection per encoder block", "student")
    init: str = setting("default", "weight initialisation of the convolutions", "student", choices=INITS)
    # optimisation (reference defaults: BCE on soft targets, Adam 1e-3, batch 32, 25-frame windows)
    seq_len: int = setting(25, "frames per training window", "optimisation", minimum=1)
    frame_size: int | None = setting(None, "train at this square size (56 = the reference's half resolution; "
                                     "divisible by 2^(B-1)); default: native", "optimisation", kind="size")
    batch_size: int = setting(32, "windows per optimisation step", "optimisation", minimum=1)
    lr: float = setting(1e-3, "Adam learning rate", "optimisation", minimum=0.0, kind="positive")
    weight_decay: float = setting(0.0, "Adam weight decay", "optimisation", minimum=0.0)
    lr_schedule: str = setting("none", "learning-rate schedule", "optimisation", choices=SCHEDULES)
    dice_weight: float = setting(0.0, "weight of a soft Dice term added to BCE", "optimisation", minimum=0.0)
    augment: float = setting(1.0, "echo augmentations during training (zoom/rotation/shift on frames and targets; "
                             "gain, gamma, contrast, depth ramp, blur, noise, speckle, sector edge, erasing on "
                             "frames), 0 = off, up to 2", "optimisation", minimum=0.0, maximum=2.0,
                             metavar="STRENGTH")
    epochs: int = setting(400, "maximum epochs (early stopping usually ends sooner)", "optimisation", minimum=1)
    max_time: str | None = setting(None, "stop training after this long (seconds or DD:HH:MM:SS)", "optimisation",
                                   kind="duration", metavar="T")
    patience: int = setting(10, "early-stopping patience on val loss (epochs)", "optimisation", minimum=0)
    clips_per_epoch: int | None = setting(None, "training windows per epoch (default: one per clip)",
                                          "optimisation", minimum=1)
    val_windows: int = setting(1, "fixed windows per validation clip (1 = centred)", "optimisation", minimum=1)
    seed: int = setting(0, "random seed (weights, windows, augmentation)", "optimisation", minimum=0)
    # data
    train_split: str = setting("TRAIN", "split(s) to train on (comma list allowed)", "data")
    val_split: str = setting("VAL", "split for val loss and threshold calibration", "data")
    channels: str | None = setting(None, "target channels: lv or lv,rv (default: lv,rv when every target has "
                                   "'rv', else lv)", "data", choices=CHANNELS, metavar="CHANNELS")
    infer_size: int | None = setting(None, "size the thresholds are calibrated at, recorded as the size predict "
                                     "runs at (default: --frame-size when given, else the clips' native size)",
                                     "data", kind="size")
    cache_gb: float = setting(4.0, "decode clips once into RAM up to this many GB", "data", minimum=0.0)
    workers: int = setting(0, "DataLoader worker processes (0: load in the training process; the clips are "
                           "cached in RAM, so 0 keeps up)", "data", minimum=0, flag="--loader-workers",
                           metavar="N")
    # hardware
    accelerator: str = setting("auto", "auto, cpu, gpu/cuda, ... (gpu is refused where there is none)",
                               "hardware")
    devices: int | str = setting(1, "devices (processes) per node, or 'auto'", "hardware", kind="devices")
    num_nodes: int = setting(1, "nodes of a multi-node run", "hardware", minimum=1)
    strategy: str = setting("auto", "auto, ddp (gloo on CPU, nccl on GPU), ddp_spawn, ...", "hardware")
    precision: str = setting("auto", "fp32, bf16 (bf16 autocast, fp32 loss) or auto (bf16 on GPUs that support "
                             "it and on CPUs with native bf16 (AVX512-BF16/AMX), else fp32)", "hardware",
                             choices=PRECISIONS)
    fused_gates: bool = setting(True, "train with the ConvLSTM gate update as one autograd function (fp32: the same "
                                "values; bf16: h in bf16, c fp32; 1.09x frames per CPU-second at 56^2, 1.18x at "
                                "112^2 over plain bf16, benchmarks/bench_train.py)", "hardware")
    channels_last: bool = setting(True, "on CPUs, train the decoder and the ConvLSTMs after the first block in "
                                  "channels-last layout (the same values to float rounding; faster convolutions, "
                                  "benchmarks/bench_train.py)", "hardware")
    compile_gates: bool = setting(False, "with --fused-gates, torch.compile the ConvLSTM gate arithmetic alone (built "
                                  "once, ~45 s on 2 cores; falls back to eager with one line)", "hardware")
    compile: bool = setting(False, "torch.compile the training step (falls back to eager with one line if it "
                            "cannot compile)", "hardware")

    def __post_init__(self) -> None:
        if self.precision in DEPRECATED_PRECISIONS:
            new = DEPRECATED_PRECISIONS[self.precision]
            warnings.warn(f"precision {self.precision!r} is deprecated; use {new!r}", DeprecationWarning,
                          stacklevel=3)
            self.precision = new
        if self.precision is None:  # configs written before the vocabulary
            self.precision = "auto"
        for f in fields(self):
            _check_setting(f, getattr(self, f.name))
        if self.infer_size is None and self.frame_size is not None:
            self.infer_size = self.frame_size  # infer where the student was trained (and calibrated)
        if self.max_time is not None:
            self.max_time = format_duration(parse_duration(self.max_time))
        for name in ("frame_size", "infer_size"):
            size = getattr(self, name)
            if size is not None:
                check_size(size, self.blocks, name)

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


def defaults(*names: str) -> dict[str, Any]:
    """DistillConfig's defaults (of `names`, or of every field)."""
    out = {f.name: f.default for f in fields(DistillConfig) if f.default is not MISSING}
    return {k: out[k] for k in names} if names else out


def flag(name: str) -> str:
    """The command-line flag of a DistillConfig field (`--loader-workers` for workers, else `--the-name`)."""
    meta = {f.name: f.metadata for f in fields(DistillConfig)}.get(name, {})
    return meta.get("flag") or "--" + name.replace("_", "-")


def flag_message(message: str) -> str:
    """A settings error with its leading field name spelt as the flag ('clips_per_epoch must' -> '--clips-per-epoch must')."""
    head, _, rest = message.partition(" ")
    name = head.rstrip(":")
    if name in {f.name for f in fields(DistillConfig)}:
        return f"{flag(name)}{head[len(name):]} {rest}"
    return message


def check_size(size: int, blocks: int, name: str = "frame_size") -> None:
    """Refuse a size a `blocks`-block student cannot run at (ValueError naming the setting)."""
    from echodfkd.models.student import check_frame_size  # lazy: the model module imports torch

    try:
        check_frame_size(size, blocks)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _check_setting(f: Field, value: Any) -> None:
    """A setting's value against its metadata: choices and bounds (None passes where it is the default)."""
    meta = f.metadata
    if value is None and f.default is None:
        return
    if meta.get("choices") and value not in meta["choices"]:
        raise ValueError(f"{f.name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = meta.get("minimum"), meta.get("maximum")
    if meta.get("kind") == "positive" and not value > low:
        raise ValueError(f"{f.name} must be > {low:g}, got {value}")
    if (low is not None and not value >= low) or (high is not None and not value <= high):
        bound = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
        raise ValueError(f"{f.name} must be {bound}, got {value}")


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
HARDWARE_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "workers", "cache_gb", "precision", "compile",
                 "fused_gates", "channels_last", "compile_gates")
#: What a run's config.json records in `training` beyond the settings (its outcome).
_OUTCOME_KEYS = ("epochs_trained", "stopped_early", "best_val_loss", "best_val_bce", "best_checkpoint")


def load_settings(path: str | Path) -> dict[str, Any]:
    """Distillation settings from a JSON file: a search's best.json, a run's config.json, or a flat dict.

    A flat dict may hold any DistillConfig field and `loss` ("bce" or "bce+dice"); anything else is an
    error naming the file and the keys. A best.json gives its best trial's `settings` (or, from an older
    search, its searched `params`); a run's config.json gives its `training` settings without the hardware.
    """
    from echodfkd.errors import EchoDFKDError
    from echodfkd.io.atomic import load_json

    path = Path(path)
    data = load_json(path, EchoDFKDError, " (expected a JSON settings file)")
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
