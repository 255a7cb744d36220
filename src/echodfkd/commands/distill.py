"""`echodfkd distill`: train a student on teacher targets (Lightning), export it and calibrate its thresholds."""

from __future__ import annotations

import argparse
import sys
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

from echodfkd.commands import _flags as flags
from echodfkd.commands._flags import existing_path
from echodfkd.distill.config import DEPRECATED_PRECISIONS, GROUPS, PRECISIONS, DistillConfig, defaults
from echodfkd.errors import EchoDFKDError

NAME = "distill"
HELP = "train a (B,l) student on teacher targets; export RUN/model.safetensors + calibrated config.json"
DESCRIPTION = (
    "Distil the teacher into a ConvLSTM student with PyTorch Lightning: random windows of --seq-len frames "
    "per clip per epoch, soft-target BCE (+ optional Dice), Adam; best/last checkpoints, early stopping on "
    "val loss, CSV + TensorBoard logs under RUN/logs. Afterwards the best checkpoint is exported and the "
    "Dice and aFD thresholds are calibrated on the validation split. --resume continues from last.ckpt. "
    "Multi-GPU/CPU: --devices N --strategy ddp [--num-nodes M].")


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


class _Precision(argparse.Action):
    """`--precision {fp32,bf16,auto}`; Lightning's spellings (bf16-mixed, 32-true) are deprecated aliases."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values in DEPRECATED_PRECISIONS:
            new = DEPRECATED_PRECISIONS[values]
            print(f"{parser.prog}: warning: --precision {values} is deprecated; use --precision {new}",
                  file=sys.stderr)
            values = new
        if values not in PRECISIONS:
            parser.error(f"argument --precision: invalid choice: {values!r} (choose from {', '.join(PRECISIONS)})")
        setattr(namespace, self.dest, values)


#: Settings a search chooses per trial (left out of `search`'s flags); blocks/layers are each command's own.
_ARCH_KEYS = ("filters", "skip", "residual", "init", "seq_len", "batch_size", "lr_schedule", "dice_weight")
_OWN_FLAGS = ("blocks", "layers")


def _flag_type(f: Field) -> Any:
    """The argparse type of a DistillConfig field, from its annotation and metadata."""
    meta, annotation = f.metadata, str(f.type)
    kind, low, high = meta.get("kind"), meta.get("minimum"), meta.get("maximum")
    if kind == "size":
        return flags.frame_size
    if kind == "duration":
        return flags.duration
    if kind == "devices":
        return _devices
    if annotation.startswith("int"):
        return {0: flags.nonnegative_int, 1: flags.positive_int}.get(low, int)
    if annotation.startswith("float"):
        if kind == "positive":
            return flags.positive_float
        if low is not None and high is not None:
            return flags.float_in(low, high)
        return flags.nonnegative_float if low == 0 else float
    return str


def add_setting(p: Any, f: Field, defer: bool = False) -> None:
    """One DistillConfig field as a flag (`defer`: unset unless given; the default is shown in the help)."""
    meta = f.metadata
    option = meta.get("flag") or "--" + f.name.replace("_", "-")
    text = meta["help"]
    if defer and f.default is not None and f.default is not False and "default" not in text:
        text = f"{text} (default: {f.default})"
    kw: dict[str, Any] = dict(dest=f.name, help=text.replace("%", "%%"),
                              default=argparse.SUPPRESS if defer else f.default)
    if f.name == "precision":
        kw.update(action=_Precision, metavar="{" + ",".join(PRECISIONS) + "}")
    elif str(f.type) == "bool":
        kw.update(action=argparse.BooleanOptionalAction)
    else:
        kw.update(type=_flag_type(f), choices=meta.get("choices"), metavar=meta.get("metavar"))
    p.add_argument(option, **kw)


def add_training_arguments(p: argparse.ArgumentParser, architecture: bool = True, defer: bool = False) -> None:
    """Options shared by distill, sweep and search, generated from DistillConfig's fields.

    `architecture=False` leaves out what a search chooses per trial; `defer`: see `_defer_defaults`.
    """
    p.add_argument("--data", required=True, help="dataset folder (EchoNet layout)")
    p.add_argument("--targets", required=True, help="teacher targets folder (targets/<FileName>.npz)")
    groups = {name: p.add_argument_group(f"{name} settings") for name in GROUPS}
    for f in fields(DistillConfig):
        if f.name in _OWN_FLAGS or (not architecture and f.name in _ARCH_KEYS):
            continue
        add_setting(groups[f.metadata["group"]], f, defer)
    flags.add_deprecated(groups["data"], "--workers", "--loader-workers", dest="workers", type=flags.nonnegative_int)


def training_keys(architecture: bool = True) -> list[str]:
    """The DistillConfig fields `add_training_arguments` adds."""
    return [f.name for f in fields(DistillConfig)
            if f.name not in _OWN_FLAGS and (architecture or f.name not in _ARCH_KEYS)]


def training_kwargs(args: argparse.Namespace, architecture: bool = True) -> dict[str, Any]:
    """The distill() keyword arguments from parsed options."""
    return {k: getattr(args, k) for k in training_keys(architecture)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `echodfkd distill`."""
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder (config.json, model.safetensors, checkpoints/, logs/)")
    p.add_argument("--config", type=existing_path, default=None, metavar="JSON",
                   help="start from the settings in this file: a search's best.json (its best trial), a run's "
                        "config.json (its training settings), or a JSON object of distill settings (flag names "
                        "with underscores, plus loss: bce or bce+dice); flags given on the command line win")
    by_name = {f.name: f for f in fields(DistillConfig)}
    for name in _OWN_FLAGS:
        add_setting(p, by_name[name], defer=True)
    p.add_argument("--resume", action="store_true",
                   help="continue the unfinished run in --out from RUN/checkpoints/last.ckpt (refused when "
                        "there is none)")
    add_training_arguments(p, defer=True)
    flags.add_json(p, help="print the run's config.json (settings, thresholds, training summary) as JSON")
    p.set_defaults(_defaults=defaults(*_OWN_FLAGS, *training_keys()))


def resolve_settings(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the unset options: first from --config, then from DistillConfig's defaults; flags given always win."""
    defaults = dict(getattr(args, "_defaults", {}))
    if getattr(args, "config", None) is not None:
        from echodfkd.distill.config import load_settings

        settings = load_settings(args.config)
        offered = sorted(set(settings) - set(defaults))
        if offered:  # a DistillConfig field with no flag here
            raise EchoDFKDError(f"{args.config}: setting(s) {', '.join(offered)} cannot be set by this command")
        defaults.update(settings)
    for key, value in defaults.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    return args


def check_settings(args: argparse.Namespace, architecture: bool = True, **extra: Any) -> DistillConfig:
    """Every setting checked before any work: one line naming the flag (e.g. --clips-per-epoch 0, --frame-size 7)."""
    from echodfkd.distill.config import flag_message

    try:
        return DistillConfig.from_kwargs(**extra, **training_kwargs(args, architecture))
    except (ValueError, TypeError) as exc:
        raise EchoDFKDError(flag_message(str(exc))) from None


def _check_resumable(out: Path) -> None:
    """`--resume` needs a run: refused where there is none; a run stopped before its first checkpoint
    (killed, disk full) starts again from epoch 0, and says so in one line."""
    from echodfkd.distill.train import CHECKPOINTS, is_finished
    from echodfkd.models.student import CONFIG_NAME

    if is_finished(out) or (out / CHECKPOINTS / "last.ckpt").is_file():
        return
    if (out / CONFIG_NAME).is_file():
        print(f"echodfkd distill: note: {out} stopped before its first checkpoint; starting it again from epoch 0",
              file=sys.stderr)
        return
    raise EchoDFKDError(f"{out}: nothing to resume (no run there: no {CONFIG_NAME}, no {CHECKPOINTS}/last.ckpt); "
                        f"run without --resume to start a new run")


def summary_line(out: Any, cfg: dict[str, Any]) -> str:
    """The run's one-line summary, floats rounded."""
    tr, thr = cfg.get("training") or {}, cfg.get("thresholds") or {}

    def num(value: Any, digits: int) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    return (f"{out}: student ({cfg['blocks']},{cfg['layers']}) {cfg.get('params'):,} params, "
            f"{tr.get('epochs_trained')} epochs, best val loss {num(tr.get('best_val_loss'), 4)}, "
            f"thresholds dice {num(thr.get('dice'), 3)} afd {num(thr.get('afd'), 3)}")


def run(args: argparse.Namespace) -> int:
    """Train, export and calibrate; print the run's summary."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from echodfkd.distill.devices import resolve_accelerator
    from echodfkd.distill.train import distill
    from echodfkd.io.lock import output_lock
    from echodfkd.io.records import StudentConfig

    resolve_settings(args)
    cfg = check_settings(args, blocks=args.blocks, layers=args.layers)
    resolve_accelerator(cfg)  # --accelerator gpu without a GPU: refused before any work
    if args.resume:
        _check_resumable(Path(args.out))
    flags.check_writable_dir(args.out)
    with output_lock(args.out), flags.stdout_for_json(args):  # the lock is a no-op in DDP workers
        out = distill(args.data, args.targets, args.out, blocks=args.blocks, layers=args.layers,
                      resume=args.resume, **training_kwargs(args))
    cfg_path = out / StudentConfig.FILE
    if rank_zero_only.rank == 0 and cfg_path.is_file():
        record = StudentConfig.read(cfg_path).to_dict()
        if args.json:
            import json

            print(json.dumps(record, indent=2, default=str))
        else:
            print(summary_line(out, record))
    return 0
