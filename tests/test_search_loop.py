"""search -> distill: best.json is a settings file for `distill --config`; flags given still win."""

from __future__ import annotations

import json

import pytest
import torch

from distill_data import make_dataset
from echodfkd.cli import build_parser, main
from echodfkd.commands.distill import resolve_settings
from echodfkd.commands.search import SEARCHED
from echodfkd.distill.search import SEARCH_SPACE, search

FAST = dict(frame_size=32, seq_len=6, batch_size=2, epochs=1)
SPLITS = ["TRAIN"] * 3 + ["VAL"] * 2

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _distill_args(*extra: str):
    args = build_parser().parse_args(["distill", "--data", "d", "--targets", "t", "--out", "o", *extra])
    return resolve_settings(args)


def test_distill_config_best_json_reproduces_the_best_trial(tmp_path, capsys):
    data, targets = make_dataset(tmp_path, SPLITS, frames=16)
    space = {"init": ["default", "xavier"], "loss": ["bce", "bce+dice"], "lr_schedule": ["none", "cosine"]}
    search(data, targets, tmp_path / "search", trials=2, space=space, blocks=1, layers=1, **FAST)
    best = json.loads((tmp_path / "search" / "best.json").read_text())["best"]
    assert best["settings"]["seq_len"] == 6 and best["settings"]["blocks"] == 1
    assert "accelerator" not in best["settings"]  # the machine's, not the trial's

    run = tmp_path / "again"
    rc = main(["distill", "--config", str(tmp_path / "search" / "best.json"), "--data", str(data),
               "--targets", str(targets), "--out", str(run)])
    assert rc == 0
    cfg = json.loads((run / "config.json").read_text())
    trial = json.loads((tmp_path / best["run"] / "config.json").read_text())
    assert (cfg["blocks"], cfg["layers"]) == (1, 1)
    for key in ("init", "lr_schedule", "dice_weight", "seq_len", "batch_size", "frame_size", "epochs"):
        assert cfg["training"][key] == trial["training"][key], key
    torch.testing.assert_close(cfg["training"]["best_val_bce"], best["value"])
    torch.testing.assert_close(cfg["training"]["best_val_loss"], trial["training"]["best_val_loss"])


def test_flags_given_win_over_the_config_file(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"lr_schedule": "cosine", "skip": True, "seq_len": 15, "loss": "bce+dice",
                                "blocks": 2}))
    args = _distill_args("--config", str(path), "--lr-schedule", "none", "--no-skip")
    assert (args.lr_schedule, args.skip, args.seq_len, args.dice_weight, args.blocks) == ("none", False, 15, 1.0, 2)
    args = _distill_args("--config", str(path), "--lr-schedule", "none", "--seq-len", "25")  # = the default
    assert (args.seq_len, args.skip) == (25, True)
    plain = _distill_args()  # no file: the usual defaults
    assert (plain.lr_schedule, plain.seq_len, plain.skip, plain.blocks, plain.lr) == ("none", 25, False, 4, 1e-3)


def test_a_run_config_json_gives_its_training_settings(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"blocks": 3, "layers": 2, "status": "done", "thresholds": {"dice": 0.5},
                                "training": {"blocks": 3, "layers": 2, "lr": 0.01, "accelerator": "cuda",
                                             "epochs_trained": 7, "best_val_loss": 0.1}}))
    args = _distill_args("--config", str(path))
    assert (args.blocks, args.layers, args.lr, args.accelerator) == (3, 2, 0.01, "auto")


@pytest.mark.parametrize("content, message", [
    ({"lr": 0.01, "learning_rate": 0.1, "colour": 1}, "unknown setting(s) colour, learning_rate"),
    ({"loss": "focal"}, "loss 'focal' must be one of"),
    ({"best": None, "trials": 0}, "no complete trial yet"),
    ({"lr": "fast"}, "setting lr must be float, got 'fast'"),
    ({"seq_len": 2.5}, "setting seq_len must be int"),
    ({"skip": 1}, "setting skip must be bool"),
    ([1, 2], "must be a JSON object"),
])
def test_a_bad_config_file_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    rc = main(["distill", "--config", str(path), "--data", str(tmp_path), "--targets", str(tmp_path),
               "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and str(path) in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_search_help_lists_the_searched_parameters_and_refuses_them(capsys):
    assert {k: v for k, (_, v) in SEARCHED.items()} == SEARCH_SPACE  # the help's copy of the space
    assert main(["search", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name, (flag, values) in SEARCHED.items():
        assert f"searched: {name} " in text and flag in text
    assert "seq_len 15/25/35" in text and "batch_size 8/16/32" in text and "--config OUT/best.json" in text
    for flag in ("--seq-len", "--batch-size"):
        assert main(["search", "--data", "d", "--targets", "t", "--out", "o", flag, "8"]) == 2
        assert f"{flag} is searched" in capsys.readouterr().err
