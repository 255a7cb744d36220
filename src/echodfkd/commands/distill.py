"""`echodfkd distill`: train a student on teacher targets (Lightning), export it and calibrate its thresholds."""

from __future__ import annotations

import argparse
import json
from typing import Any

from echodfkd.commands._flags import existing_path
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


def add_training_arguments(p: argparse.ArgumentParser, architecture: bool = True) -> None:
    """Options shared by distill, sweep and search (data, optimisation, hardware)."""
    p.add_argument("--data", required=True, help="dataset folder (EchoNet layout)")
    p.add_argument("--targets", required=True, help="teacher targets folder (targets/<FileName>.npz)")
    if architecture:
        p.add_argument("--filters", type=int, default=12, help="width F of the first block (F*2^b after)")
        p.add_argument("--skip", action=argparse.BooleanOptionalAction, default=False,
                       help="U-Net skip connections (not in the reference)")
        p.add_argument("--residual", action=argparse.BooleanOptionalAction, default=False,
                       help="residual connection per encoder block")
        p.add_argument("--init", default="default", choices=["default", "xavier", "kaiming", "orthogonal"],
                       help="weight initialisation of the convolutions")
        p.add_argument("--seq-len", type=int, default=25, help="frames per training window")
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--lr-schedule", default="none", choices=["none", "cosine", "step"])
        p.add_argument("--dice-weight", type=float, default=0.0, help="weight of a soft Dice term added to BCE")
    p.add_argument("--frame-size", type=int, default=None,
                   help="train at this square size (56 = the reference's half resolution); default: native")
    p.add_argument("--infer-size", type=int, default=None,
                   help="size the thresholds are calibrated at, recorded as the size predict runs at "
                        "(default: --frame-size when given, else the clips' native size)")
    p.add_argument("--augment", type=float, default=1.0, metavar="STRENGTH",
                   help="echo augmentations during training (zoom/rotation/shift on frames and targets; gain, "
                        "gamma, contrast, depth ramp, blur, noise, speckle, sector edge, erasing on frames), "
                        "0 = off, up to 2")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=400, help="maximum epochs (early stopping usually ends sooner)")
    p.add_argument("--max-time", default=None, help="stop training after this long (seconds or DD:HH:MM:SS)")
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience on val loss (epochs)")
    p.add_argument("--train-split", default="TRAIN", help="split(s) to train on (comma list allowed)")
    p.add_argument("--val-split", default="VAL", help="split for val loss and threshold calibration")
    p.add_argument("--clips-per-epoch", type=int, default=None, help="training windows per epoch (default: one per clip)")
    p.add_argument("--val-windows", type=int, default=1, help="fixed windows per validation clip (1 = centred)")
    p.add_argument("--channels", default=None, choices=["lv", "lv,rv"],
                   help="target channels (default: lv,rv when every target has 'rv', else lv)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--cache-gb", type=float, default=4.0, help="decode clips once into RAM up to this size")
    p.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, ...")
    p.add_argument("--devices", type=_devices, default=1, help="devices (processes) per node, or 'auto'")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--strategy", default="auto", help="auto, ddp (gloo on CPU, nccl on GPU), ddp_spawn, ...")
    p.add_argument("--precision", default=None,
                   help="Lightning precision (default: bf16-mixed on GPUs that support it and on CPUs with "
                        "native bf16 (AVX512-BF16/AMX), else 32-true)")


_KEYS = ["frame_size", "infer_size", "augment", "lr", "weight_decay", "epochs", "max_time", "patience", "train_split",
         "val_split", "clips_per_epoch", "val_windows", "channels", "seed", "workers", "cache_gb",
         "accelerator", "devices", "num_nodes", "strategy", "precision"]
_ARCH_KEYS = ["filters", "skip", "residual", "init", "seq_len", "batch_size", "lr_schedule", "dice_weight"]


def training_kwargs(args: argparse.Namespace, architecture: bool = True) -> dict[str, Any]:
    """The distill() keyword arguments from parsed options."""
    keys = _KEYS + (_ARCH_KEYS if architecture else [])
    return {k: getattr(args, k) for k in keys}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `echodfkd distill`."""
    p.add_argument("--out", required=True, help="run folder (config.json, model.safetensors, checkpoints/, logs/)")
    p.add_argument("--config", type=existing_path, default=None, metavar="JSON",
                   help="start from the settings in this file: a search's best.json (its best trial), a run's "
                        "config.json (its training settings), or a JSON object of distill settings (flag names "
                        "with underscores, plus loss: bce or bce+dice); flags given on the command line win")
    p.add_argument("--blocks", type=int, default=4, help="B: encoder blocks")
    p.add_argument("--layers", type=int, default=1, help="l: ConvLSTM layers per block")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.ckpt")
    add_training_arguments(p)
    _defer_defaults(p, ("blocks", "layers", *_KEYS, *_ARCH_KEYS))


def _defer_defaults(p: argparse.ArgumentParser, dests: tuple[str, ...]) -> None:
    """Leave these options unset unless given (so --config can tell a given flag from a default); the
    defaults go to `_defaults` and are still shown in --help."""
    defaults = {}
    for action in p._actions:
        if action.dest in dests and action.default is not argparse.SUPPRESS:
            defaults[action.dest] = action.default
            text = action.help or ""
            if action.help is not argparse.SUPPRESS and action.default not in (None, False) and "default" not in text:
                shown = str(action.default).replace("%", "%%")
                action.help = f"{text} (default: {shown})".strip()
            action.default = argparse.SUPPRESS
    p.set_defaults(_defaults=defaults)


def resolve_settings(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the unset options: first from --config, then from the defaults; flags given always win."""
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


def run(args: argparse.Namespace) -> int:
    """Train, export and calibrate; print the run's summary."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from echodfkd.distill.train import distill
    from echodfkd.io.lock import output_lock

    resolve_settings(args)

    with output_lock(args.out):  # a no-op in DDP worker processes: rank 0 holds it
        out = distill(args.data, args.targets, args.out, blocks=args.blocks, layers=args.layers,
                      resume=args.resume, **training_kwargs(args))
    cfg_path = out / "config.json"
    if rank_zero_only.rank == 0 and cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        tr, thr = cfg.get("training", {}), cfg.get("thresholds", {})
        print(f"{out}: student ({cfg['blocks']},{cfg['layers']}) {cfg.get('params')} params, "
              f"{tr.get('epochs_trained')} epochs, best val loss {tr.get('best_val_loss')}, "
              f"thresholds dice {thr.get('dice')} afd {thr.get('afd')}")
    return 0
