"""(B,l) sweeps and the Optuna search: resumable, pruned through a Lightning callback, results on disk."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest

from distill_data import make_dataset
from echodfkd.cli import main
from echodfkd.distill.search import _retry_failed, pruning_callback, search
from echodfkd.distill.sweep import parse_range, sweep
from echodfkd.errors import EchoDFKDError

FAST = dict(frame_size=32, seq_len=6, batch_size=2, epochs=1)
SPLITS = ["TRAIN"] * 3 + ["VAL"] * 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_parse_range():
    assert parse_range("1-4") == [1, 2, 3, 4] and parse_range("1,3") == [1, 3] and parse_range(2) == [2]
    for bad in ("0-2", "3-1", "a", "1-"):
        with pytest.raises(EchoDFKDError):
            parse_range(bad)


def test_sweep_trains_the_grid_and_skips_finished_runs(tmp_path, capsys):
    data, targets = make_dataset(tmp_path, SPLITS, frames=16)
    out = tmp_path / "sweep"
    rc = main(["sweep", "--data", str(data), "--targets", str(targets), "--out", str(out), "--blocks", "1-2",
               "--layers", "1", "--epochs", "1", "--seq-len", "6", "--batch-size", "2", "--frame-size", "32"])
    assert rc == 0 and "summary.csv" in capsys.readouterr().out
    summary = pd.read_csv(out / "summary.csv")
    assert summary["run"].tolist() == ["b1_l1", "b2_l1"] and summary["params"].tolist()[0] == 5701
    assert summary["threshold_dice"].between(0, 1).all() and summary["best_val_loss"].notna().all()
    stamps = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("b*_l*/model.safetensors")}

    (out / "b2_l1" / "model.safetensors").unlink()  # an unfinished run: resumes from last.ckpt and exports
    again = sweep(data, targets, out, blocks=[1, 2], layers=[1], **FAST)
    assert len(again) == 2
    assert (out / "b1_l1" / "model.safetensors").stat().st_mtime_ns == stamps["b1_l1"]  # skipped
    assert (out / "b2_l1" / "model.safetensors").is_file()
    assert json.loads((out / "b2_l1" / "config.json").read_text())["training"]["epochs_trained"] == 1


def test_search_study_resumes_and_records_the_best_trial(tmp_path):
    data, targets = make_dataset(tmp_path, SPLITS, frames=16)
    out = tmp_path / "search"
    space = {"init": ["default", "xavier"], "loss": ["bce", "bce+dice"], "lr_schedule": ["none", "cosine"],
             "residual": [False, True]}
    result = search(data, targets, out, trials=2, space=space, blocks=1, layers=1, **FAST)
    assert (out / "study.db").is_file() and result["complete"] == 2
    best = json.loads((out / "best.json").read_text())["best"]
    assert set(best["params"]) == set(space) and (tmp_path / best["run"]).is_dir()
    assert 0 < best["thresholds"]["dice"] < 1
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 2 and set(trials["state"]) == {"COMPLETE"}

    again = search(data, targets, out, trials=2, space=space, blocks=1, layers=1, **FAST)
    assert again["trials"] == 2  # already reached: nothing new
    study = optuna.load_study(study_name="echodfkd", storage=f"sqlite:///{out / 'study.db'}")
    cfgs = [json.loads((out / "trials" / f"trial_{t.number:04d}" / "config.json").read_text()) for t in study.trials]
    for t, cfg in zip(study.trials, cfgs):  # each trial's choices reached its run
        assert cfg["residual"] == t.params["residual"] and cfg["training"]["init"] == t.params["init"]
        assert cfg["training"]["dice_weight"] == (1.0 if t.params["loss"] == "bce+dice" else 0.0)


class _Trial:
    """Enough of optuna.Trial for the pruning callback."""

    def __init__(self, prune_at: int):
        self.reports, self.prune_at = [], prune_at

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return len(self.reports) > self.prune_at


def test_pruning_callback_reports_each_epoch_and_prunes(tmp_path):
    from echodfkd.distill.train import distill

    data, targets = make_dataset(tmp_path, SPLITS, frames=12)
    trial = _Trial(prune_at=1)
    with pytest.raises(optuna.TrialPruned, match="epoch 1"):
        distill(data, targets, tmp_path / "run", blocks=1, callbacks=[pruning_callback(trial)],
                **dict(FAST, epochs=4))
    assert [s for s, _ in trial.reports] == [0, 1] and all(v > 0 for _, v in trial.reports)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_failed_trials_are_retried_with_their_settings(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    dist = optuna.distributions.CategoricalDistribution(["bce", "bce+dice"])
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={"loss": "bce+dice"},
                                              distributions={"loss": dist}))
    _retry_failed(study)
    _retry_failed(study)  # idempotent: one retry per failed trial
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs == {"retry_of": 0, "run_number": 0}
    trial = study.ask()
    assert trial.suggest_categorical("loss", ["bce", "bce+dice"]) == "bce+dice"
