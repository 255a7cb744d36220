"""An Optuna search over the paper's training choices (the (B, l) sweep is `echodfkd.distill.sweep`).

A search resumes: it keeps its study in `OUT/study.db` (SQLite) and re-runs interrupted trials with the
same settings, resuming their run folder. Several `echodfkd search` processes may share one study (e.g.
one per GPU). For DDP inside a search, launch the processes externally (`torchrun ... -m echodfkd search
...`): Lightning's own process launcher supports a single `fit` per script only.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from echodfkd.distill.config import HARDWARE_KEYS, LOSSES
from echodfkd.distill.train import distill
from echodfkd.io.atomic import save_json, save_text
from echodfkd.io.records import StudentConfig

#: The paper's search space (supp.): init, widths, loss, batch size, window length, lr schedule, skip/residual.
SEARCH_SPACE: dict[str, list[Any]] = {
    "init": ["default", "xavier", "kaiming", "orthogonal"],
    "filters": [8, 12, 16],
    "loss": ["bce", "bce+dice"],
    "batch_size": [8, 16, 32],
    "seq_len": [15, 25, 35],
    "lr_schedule": ["none", "cosine", "step"],
    "skip": [False, True],
    "residual": [False, True],
}
DICE_WEIGHT = LOSSES["bce+dice"]  # weight of the Dice term when a trial picks "bce+dice"


def pruning_callback(trial: Any, monitor: str = "val_bce") -> Any:
    """A Lightning callback reporting `monitor` to an Optuna trial each epoch and pruning when told."""
    import lightning.pytorch as pl
    import optuna

    class OptunaPruning(pl.Callback):
        """Report the validation metric each epoch; raise TrialPruned when the pruner says so."""

        def __init__(self) -> None:
            self.best: float | None = None

        def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if trainer.sanity_checking or monitor not in trainer.callback_metrics:
                return
            value = float(trainer.callback_metrics[monitor])
            self.best = value if self.best is None else min(self.best, value)
            epoch = trainer.current_epoch
            trial.report(value, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{monitor}={value:.4f} at epoch {epoch}")

    return OptunaPruning()


def _retry_failed(study: Any) -> None:
    """Queue one retry of each failed (e.g. interrupted) trial with its settings; it resumes the same run folder."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        if t.state == TrialState.FAIL and t.number not in retried and t.params:
            root = t.user_attrs.get("retry_of", t.number)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "run_number": root},
                                skip_if_exists=False)


def search(data_root: str | os.PathLike, targets_dir: str | os.PathLike, out: str | os.PathLike,
           trials: int = 20, study_name: str = "echodfkd", seed: int = 0, startup_trials: int = 5,
           warmup_epochs: int = 3, space: dict[str, list[Any]] | None = None, **kw: Any) -> dict[str, Any]:
    """Optuna study (TPE + MedianPruner) over `space`; runs until `trials` trials are complete or pruned."""
    import optuna
    from optuna.trial import TrialState

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    space = space or SEARCH_SPACE
    with warnings.catch_warnings():  # heartbeats (stale-trial detection) are flagged experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}", heartbeat_interval=60,
                                             grace_period=180)
    study = optuna.create_study(
        storage=storage, study_name=study_name, load_if_exists=True, direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs))
    _retry_failed(study)
    done_states = (TrialState.COMPLETE, TrialState.PRUNED)

    def objective(trial: optuna.Trial) -> float:
        params = {name: trial.suggest_categorical(name, choices) for name, choices in space.items()}
        settings = dict(kw, seed=seed)
        for name, value in params.items():
            if name == "loss":
                settings["dice_weight"] = LOSSES[value]
            else:
                settings[name] = value
        # everything the trial trained with but the machine: `distill --config best.json` starts from it
        trial.set_user_attr("settings", {k: v for k, v in settings.items() if k not in HARDWARE_KEYS})
        run = out / "trials" / f"trial_{int(trial.user_attrs.get('run_number', trial.number)):04d}"
        trial.set_user_attr("run", str(run))
        cb = pruning_callback(trial)
        distill(data_root, targets_dir, run, resume=True, callbacks=[cb], **settings)
        cfg = StudentConfig.read(run).to_dict()
        trial.set_user_attr("params_count", cfg.get("params"))
        trial.set_user_attr("thresholds", cfg.get("thresholds"))
        best = cfg["training"].get("best_val_bce")  # every epoch, including those before a resume
        return float(best if best is not None else cb.best if cb.best is not None else cfg["training"]["best_val_loss"])

    remaining = trials - len(study.get_trials(deepcopy=False, states=done_states))
    if remaining > 0:
        optuna.logging.set_verbosity(optuna.logging.WARNING if os.environ.get("ECHODFKD_QUIET") == "1"
                                     else optuna.logging.INFO)
        study.optimize(objective, n_trials=remaining, catch=(),
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=done_states)])
    return _write_results(study, out)


def _write_results(study: Any, out: Path) -> dict[str, Any]:
    """trials.csv (every trial) and best.json (the best complete trial)."""
    from optuna.trial import TrialState

    save_text(out / "trials.csv", study.trials_dataframe().to_csv(index=False))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        result = {"best": None, "trials": len(study.trials)}
    else:
        best = study.best_trial
        result = {"best": {"number": best.number, "value": best.value, "params": best.params,
                           "run": best.user_attrs.get("run"), "thresholds": best.user_attrs.get("thresholds"),
                           "settings": best.user_attrs.get("settings")},
                  "trials": len(study.trials),
                  "complete": len(complete),
                  "pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))}
    save_json(out / "best.json", result)
    return result
