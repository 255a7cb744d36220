"""Distil the teacher into a student: validate inputs, train with Lightning, export, calibrate thresholds.

Run directory layout (`out`):
- `config.json`: student architecture + `training` settings + `data` paths + `thresholds`
  (`{"dice": t, "afd": t}`, LV channel; `thresholds_rv` for a 2-channel student) + `calibration` report.
  Written at the start (status "training") and rewritten with the thresholds at the end.
- `model.safetensors`: the best-val-loss weights (present only once the run has finished).
- `checkpoints/best.ckpt`, `checkpoints/last.ckpt`: Lightning checkpoints; `resume=True` continues from last.
- `logs/csv/version_N/metrics.csv` and `logs/tensorboard/version_N/` (one version per (re)start).

Checkpoints hold only tensors and plain values, so Lightning restores them with `weights_only=True`
(passed to `Trainer.fit`) and the export reads the best one with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from echodfkd.data.clips import (ClipStore, FixedWindows, TargetsCheck, TargetsFolder, TrainWindows,
                                 WindowSampler, check_targets)
from echodfkd.distill.checks import check_checkpoint, check_resume, check_seq_len, check_sizes
from echodfkd.distill.config import LIGHTNING_PRECISION, DistillConfig
from echodfkd.distill.devices import channels_last, lightning_precision, resolve_accelerator, strategy
from echodfkd.errors import ModelError
from echodfkd.io.atomic import DISK_FULL
from echodfkd.io.records import RecordError, StudentConfig
from echodfkd.models.student import CONFIG_NAME, WEIGHTS_NAME, Student

log = logging.getLogger(__name__)
CHECKPOINTS, LOGS = "checkpoints", "logs"
# Lightning advice that does not apply to small in-memory clip sets, or to resuming into the same folder.
_QUIET_WARNINGS = (".*does not have many workers.*", ".*number of training batches.*smaller than the logging.*",
                   ".*exists and is not empty.*", ".*Found .* module.s. in eval mode.*", ".*LeafSpec.*")


def is_finished(run: str | os.PathLike) -> bool:
    """A run is finished when it has exported its weights and calibrated thresholds."""
    run = Path(run)
    if not (run / WEIGHTS_NAME).is_file() or not (run / CONFIG_NAME).is_file():
        return False
    try:
        return StudentConfig.read(run / CONFIG_NAME).finished
    except RecordError:
        return False


def _quiet() -> bool:
    return os.environ.get("ECHODFKD_QUIET") == "1"


def _native_size(sizes: list[list[int]]) -> int | None:
    """The one square size calibration ran at (recorded so that predict runs there too), else None."""
    return sizes[0][0] if len(sizes) == 1 and sizes[0][0] == sizes[0][1] else None


def best_logged(run: Path, metric: str) -> float | None:
    """The lowest value of `metric` over every (re)start's CSV log of a run."""
    import pandas as pd

    values = []
    for path in sorted((run / LOGS / "csv").glob("version_*/metrics.csv")):
        try:
            table = pd.read_csv(path)
        except (OSError, ValueError, pd.errors.EmptyDataError):
            continue
        if metric in table:
            values.extend(table[metric].dropna().tolist())
    return float(min(values)) if values else None


def _val_clips(dataset: Any, names: list[str], targets: TargetsFolder, channels: tuple[str, ...],
               augment: float = 0.0, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Validation clips with their targets; with `augment` > 0 each is followed by one augmented copy, so
    thresholds are chosen for the look of other scanners too, not only the phantom's (see calibrate)."""
    from echodfkd.data.augment import augment_clip

    for i, name in enumerate(names):
        frames, _ = dataset.video(name)
        soft = targets.load(name, channels)
        yield frames, soft
        if augment > 0:
            yield augment_clip(frames, soft, augment, seed=seed * 100003 + i)


def _best_student(ckpt_path: str | None, fallback: Any, student_cfg: dict[str, Any]) -> Student:
    """The student of the best checkpoint (safe tensor-only loading), else the in-memory one."""
    import torch

    student = Student(**student_cfg)
    if ckpt_path and Path(ckpt_path).is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        state = {k[len("student."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("student.")}
        student.load_state_dict(state)
    else:
        student.load_state_dict(fallback.student.state_dict())
    return student.eval()


def _checkpoint_callback() -> type:
    """ModelCheckpoint that writes each file beside itself and renames it: a kill mid-write leaves the old one."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    class AtomicCheckpoint(ModelCheckpoint):
        def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
            path = Path(filepath)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
            try:
                super()._save_checkpoint(trainer, str(tmp))
                self._last_checkpoint_saved = filepath
                if trainer.is_global_zero and tmp.exists():
                    os.replace(tmp, path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                if exc.errno in DISK_FULL:
                    raise ModelError(f"{path}: no space left on device (earlier checkpoints are kept); free "
                                     f"some space and rerun with --resume") from None
                raise

    return AtomicCheckpoint


def _sampler_epoch(sampler: WindowSampler) -> Any:
    """A callback giving the window sampler its epoch, also through a resume.

    Lightning reaches the sampler itself only when it is not wrapped (DDP wraps it). On resume it builds
    the first loader iterator before any epoch hook, and loader workers fetch ahead from it at once, so
    the epoch to come is restored from the checkpoint (saved at an epoch's end) before that.
    """
    import lightning.pytorch as pl

    class SamplerEpoch(pl.Callback):
        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            sampler.set_epoch(trainer.current_epoch)

        def state_dict(self) -> dict[str, Any]:
            return {"epoch": sampler.epoch}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            sampler.set_epoch(int(state_dict["epoch"]) + 1)

    return SamplerEpoch()


@dataclass
class _Inputs:
    """What validation learned about the data before any training: clips, targets, channels."""

    dataset: Any
    targets: TargetsFolder
    train_names: list[str]
    val_names: list[str]
    train_check: TargetsCheck
    val_check: TargetsCheck
    info: dict[str, Any]

    @property
    def channels(self) -> tuple[str, ...]:
        return self.train_check.channels


def _config(settings: dict[str, Any]) -> DistillConfig:
    """The run's settings (DistillConfig fields; its defaults for the rest), one line when one is wrong."""
    try:
        return DistillConfig.from_kwargs(**settings)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"distill: {exc}") from None


def _finished_or_refused(run: Path, last: Path, resume: bool) -> bool:
    """True when the run is already finished and `resume` asks for nothing more; refuses to overwrite a run."""
    if is_finished(run):
        if resume:
            log.info("%s: already finished; nothing to resume", run)
            return True
        raise ModelError(f"{run}: already holds a finished run (model.safetensors); choose another output folder")
    if last.is_file() and not resume:
        raise ModelError(f"{last}: an unfinished run is there; pass --resume to continue it or choose another output folder")
    return False


def _validate(data_root: str | os.PathLike, targets_dir: str | os.PathLike, run: Path, cfg: DistillConfig,
              resume: bool) -> _Inputs:
    """Every check on the data, the targets and a resumed run, before anything is written."""
    from echodfkd.data import open_dataset

    dataset = open_dataset(data_root)
    targets = TargetsFolder(targets_dir)
    train_names, val_names = dataset.names(cfg.train_split), dataset.names(cfg.val_split)
    want = None if cfg.channels is None else tuple(cfg.channels.split(","))
    train_check = check_targets(dataset, train_names, targets, cfg.train_split, want)
    val_check = check_targets(dataset, val_names, targets, cfg.val_split, train_check.channels)
    check_sizes(cfg, dataset, {"train": train_check, "val": val_check, "calibration": val_check})
    check_seq_len(cfg, train_check)
    if resume:
        check_resume(run, cfg, targets)
    info = {"data_root": str(Path(data_root).resolve()), "targets_dir": str(targets.root.resolve()),
            "train_split": cfg.train_split, "val_split": cfg.val_split, "train_clips": len(train_names),
            "val_clips": len(val_names), "channels": list(train_check.channels), "targets_meta": targets.meta}
    return _Inputs(dataset, targets, train_names, val_names, train_check, val_check, info)


def _write_start(run: Path, cfg: DistillConfig, inputs: _Inputs) -> None:
    """config.json with status "training" (rank 0), so the run folder says what it holds from the start."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:
        arch = Student(**cfg.student(out_channels=len(inputs.channels)))
        StudentConfig.parse(dict(arch.config, params=arch.num_parameters(), status="training",
                                 training=cfg.as_dict(), data=inputs.info), run / CONFIG_NAME).write(run / CONFIG_NAME)


def _loaders(cfg: DistillConfig, inputs: _Inputs, accelerator: str) -> tuple[WindowSampler, Any, Any]:
    """The window sampler and the train/val loaders over clips cached in RAM."""
    import torch
    from torch.utils.data import DataLoader

    cache = int(cfg.cache_gb * 2 ** 30)
    train_store = ClipStore(inputs.dataset, inputs.train_names, inputs.targets, inputs.train_check, cfg.frame_size,
                            cache, desc=f"loading {cfg.train_split} clips")
    val_store = ClipStore(inputs.dataset, inputs.val_names, inputs.targets, inputs.val_check, cfg.frame_size, cache,
                          desc=f"loading {cfg.val_split} clips")
    loader_kw = dict(batch_size=cfg.batch_size, num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
                     pin_memory=accelerator == "cuda")
    # Loaders draw their worker seeds from a private generator: torch's global RNG (the augmentation's)
    # then advances alike with or without (persistent) workers, before and after a resume.
    rng = {"train": torch.Generator().manual_seed(cfg.seed), "val": torch.Generator().manual_seed(cfg.seed + 1)}
    # Windows drawn from (seed, epoch), RNG states kept in the checkpoints: a resumed run equals an uninterrupted one.
    sampler = WindowSampler(TrainWindows(train_store, cfg.seq_len, cfg.clips_per_epoch), seed=cfg.seed)
    train_dl = DataLoader(sampler.windows, sampler=sampler, generator=rng["train"], **loader_kw)
    val_dl = DataLoader(FixedWindows(val_store, cfg.seq_len, cfg.val_windows), shuffle=False, generator=rng["val"],
                        **loader_kw)
    return sampler, train_dl, val_dl


def _no_tips(record: logging.LogRecord) -> bool:
    """Logging filter: drop Lightning's advertising tips (litlogger, litmodels), no advice about this run."""
    return "Tip:" not in str(record.msg)


def _quiet_lightning() -> None:
    """No Lightning tips; with ECHODFKD_QUIET=1 only its warnings."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _no_tips not in logger.filters:
            logger.addFilter(_no_tips)
    if _quiet():
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


def _trainer(run: Path, cfg: DistillConfig, accelerator: str, precision: str, sampler: WindowSampler,
             steps_per_epoch: int, callbacks: list[Any] | None) -> tuple[Any, Any, Any]:
    """The Lightning Trainer with atomic best/last checkpoints, early stopping and CSV + TensorBoard logs."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    ckpt_cb = _checkpoint_callback()(dirpath=run / CHECKPOINTS, filename="best", monitor="val_loss", mode="min",
                                     save_top_k=1, save_last=True, enable_version_counter=False)
    early = EarlyStopping(monitor="val_loss", mode="min", patience=cfg.patience)
    cbs = [ckpt_cb, early, _sampler_epoch(sampler)]
    if not _quiet():
        cbs.append(TQDMProgressBar())
    cbs.extend(callbacks or [])
    loggers = [CSVLogger(run / LOGS, name="csv"), TensorBoardLogger(run / LOGS, name="tensorboard",
                                                                    default_hp_metric=False)]
    _quiet_lightning()
    trainer = pl.Trainer(
        default_root_dir=run, max_epochs=cfg.epochs, max_time=cfg.max_time, accelerator=accelerator,
        devices=cfg.devices, num_nodes=cfg.num_nodes, strategy=strategy(cfg, accelerator),
        precision=precision, callbacks=cbs, logger=loggers,
        log_every_n_steps=max(1, min(50, steps_per_epoch)), num_sanity_val_steps=0,
        enable_progress_bar=not _quiet(), enable_model_summary=not _quiet())
    return trainer, ckpt_cb, early


def _fit(trainer: Any, module: Any, train_dl: Any, val_dl: Any, ckpt: Path | None, where: Path) -> None:
    """trainer.fit with Lightning's own faults as one line and Ctrl-C as KeyboardInterrupt."""
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    with warnings.catch_warnings():
        for pattern in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        try:
            trainer.fit(module, train_dl, val_dl, ckpt_path=ckpt, weights_only=True)
        except MisconfigurationException as exc:  # e.g. resuming past --epochs: a settings problem, one line
            raise ModelError(f"{where}: {str(exc).strip().splitlines()[0]}") from None
        except SystemExit:
            # Lightning turns Ctrl-C into sys.exit(1) after saving nothing more; report it as an interruption.
            if trainer.interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.default_int_handler)
    if trainer.interrupted:
        raise KeyboardInterrupt


def _export(run: Path, cfg: DistillConfig, inputs: _Inputs, module: Any, trainer: Any, ckpt_cb: Any, early: Any,
            accelerator: str) -> None:
    """The best checkpoint's student calibrated on VAL and saved with config.json (status "done")."""
    from echodfkd.distill.calibrate import calibrate

    student_cfg = cfg.student(out_channels=len(inputs.channels))
    student = _best_student(ckpt_cb.best_model_path, module, student_cfg)
    device = "cuda" if accelerator == "cuda" else "cpu"
    clips = _val_clips(inputs.dataset, inputs.val_names, inputs.targets, inputs.channels, cfg.augment, cfg.seed)
    cal = calibrate(student, clips, inputs.channels, count=len(inputs.val_names) * (2 if cfg.augment > 0 else 1),
                    infer_size=cfg.infer_size, device=device)
    best = ckpt_cb.best_model_score
    used = {v: k for k, v in LIGHTNING_PRECISION.items()}.get(str(trainer.precision), str(trainer.precision))
    training = dict(cfg.as_dict(), epochs_trained=int(trainer.current_epoch),
                    stopped_early=bool(early.stopped_epoch > 0),
                    best_val_loss=None if best is None else float(best),
                    best_val_bce=best_logged(run, "val_bce"),
                    best_checkpoint=str(ckpt_cb.best_model_path) or None, precision=used,
                    compiled=bool(getattr(module, "compiled", False)))
    # The LV is one region: predict keeps the largest by default (stray blobs in the RV or atrium on
    # real clips); RUN/stream.json or predict --no-largest-component override it.
    extra = dict(status="done", training=training, data=inputs.info,
                 infer_size=cfg.infer_size or _native_size(cal["calibration"]["sizes"]),
                 stream={"largest_component": True, "warmup": 0}, **cal)
    student.cpu().save_pretrained(run, extra_config=extra)


def distill(data_root: str | os.PathLike, targets_dir: str | os.PathLike, out: str | os.PathLike,
            resume: bool = False, callbacks: list[Any] | None = None, **settings: Any) -> Path:
    """Train a (blocks, layers) student on the teacher targets; returns the run directory.

    `settings` are DistillConfig's fields (blocks, layers, epochs, frame_size, lr, ...), its defaults for
    the rest. `resume` continues from RUN/checkpoints/last.ckpt when there is one (else starts afresh);
    `callbacks` are extra Lightning callbacks.
    """
    import lightning.pytorch as pl

    from echodfkd.distill.module import DistillModule

    cfg = _config(settings)
    run = Path(out)
    last = run / CHECKPOINTS / "last.ckpt"
    if _finished_or_refused(run, last, resume):
        return run
    inputs = _validate(data_root, targets_dir, run, cfg, resume)
    accelerator = resolve_accelerator(cfg)
    precision = lightning_precision(cfg, accelerator)
    ckpt = last if resume and last.is_file() else None
    if ckpt is not None:
        check_checkpoint(ckpt)
    _write_start(run, cfg, inputs)

    sampler, train_dl, val_dl = _loaders(cfg, inputs, accelerator)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module = DistillModule(cfg.student(out_channels=len(inputs.channels)), lr=cfg.lr, dice_weight=cfg.dice_weight,
                           lr_schedule=cfg.lr_schedule, max_epochs=cfg.epochs, init=cfg.init,
                           weight_decay=cfg.weight_decay, augment=cfg.augment, compile=cfg.compile,
                           fused_gates=cfg.fused_gates, channels_last=channels_last(cfg, accelerator),
                           compile_gates=cfg.compile_gates)
    trainer, ckpt_cb, early = _trainer(run, cfg, accelerator, precision, sampler, len(train_dl), callbacks)
    _fit(trainer, module, train_dl, val_dl, ckpt, last if resume else run)
    if trainer.is_global_zero:
        _export(run, cfg, inputs, module, trainer, ckpt_cb, early, accelerator)
    return run
