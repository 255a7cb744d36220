"""`echodfkd distill` as a user meets it: flags generated from DistillConfig, bad input in one line, the
summary, resume faults, the compile fallback and the fused gate update's gradients."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import pytest
import torch

from distill_data import make_dataset
from echodfkd.cli import build_parser, main
from echodfkd.commands.distill import resolve_settings, training_keys
from echodfkd.distill.config import DistillConfig, defaults, flag

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPLITS = ["TRAIN"] * 3 + ["VAL"] * 2
TINY = ["--blocks", "1", "--frame-size", "32", "--seq-len", "6", "--batch-size", "2", "--epochs", "1"]


@pytest.fixture
def tiny(tmp_path):
    """A 5-clip dataset (30 frames, 64x64) with its targets."""
    return make_dataset(tmp_path, SPLITS, frames=30)


def _distill(data, targets, out, *extra):
    return ["distill", "--data", str(data), "--targets", str(targets), "--out", str(out), *extra]


# ------------------------------------------------------------------------------------------ one home for defaults
def test_every_setting_is_a_flag_with_distillconfigs_default():
    parser = build_parser()
    args = resolve_settings(parser.parse_args(["distill", "--data", "d", "--targets", "t", "--out", "o"]))
    for f in dataclasses.fields(DistillConfig):
        assert getattr(args, f.name) == f.default, f.name  # unset flags take the dataclass default
    help_text = parser._subparsers._group_actions[0].choices["distill"].format_help()
    for f in dataclasses.fields(DistillConfig):
        assert flag(f.name) in help_text, f.name
    assert "--loader-workers" in help_text and "{lv,lv,rv}" not in help_text

    # a flag given wins, and the DistillConfig it makes is the one distill() builds
    args = resolve_settings(parser.parse_args(["distill", "--data", "d", "--targets", "t", "--out", "o",
                                               "--seq-len", "9", "--no-skip", "--loader-workers", "2"]))
    assert args.seq_len == 9 and args.workers == 2 and args.skip is False


def test_sweep_search_and_reproduce_take_distillconfigs_defaults():
    from echodfkd.reproduce.inputs import Settings

    parser = build_parser()
    sweep = parser.parse_args(["sweep", "--data", "d", "--targets", "t", "--out", "o"])
    search = parser.parse_args(["search", "--data", "d", "--targets", "t", "--out", "o"])
    want = defaults()
    assert {k: getattr(sweep, k) for k in training_keys()} == {k: want[k] for k in training_keys()}
    assert {k: getattr(search, k) for k in training_keys(False)} == {k: want[k] for k in training_keys(False)}
    settings = {f.name: f.default for f in dataclasses.fields(Settings)}
    for name in ("epochs", "seq_len", "batch_size", "patience", "devices", "num_nodes", "strategy"):
        assert settings[name] == want[name], name


# ------------------------------------------------------------------------------------------ bad input
BAD = [
    (["--clips-per-epoch", "0"], "--clips-per-epoch: must be an integer >= 1"),
    (["--cache-gb", "-1"], "--cache-gb: must be a number >= 0"),
    (["--precision", "banana"], "invalid choice: 'banana' (choose from fp32, bf16, auto)"),
    (["--frame-size", "7"], "--frame-size: frame size 7 must be a positive multiple of 8 for a 4-block student"),
    (["--frame-size", "18", "--blocks", "3"], "--frame-size: frame size 18 must be a positive multiple of 4"),
    (["--infer-size", "12"], "--infer-size: frame size 12 must be a positive multiple of 8"),
    (["--lr", "0"], "--lr: must be a number > 0"),
    (["--augment", "3"], "--augment: must be a number in [0, 2]"),
    (["--seq-len", "999"], "--seq-len 999: longer than every TRAIN clip (the longest has 30 frames)"),
    (["--resume"], "nothing to resume (no run there: no config.json, no checkpoints/last.ckpt); run without"),
    (["--max-time", "-5"], "--max-time"),
]


@pytest.mark.parametrize("extra,expected", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_input_is_one_line_and_nothing_written(tiny, tmp_path, capsys, extra, expected):
    data, targets = tiny
    out = tmp_path / "run"
    rc = main(_distill(data, targets, out, *extra))
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: --accelerator gpu is valid here")
@pytest.mark.parametrize("name", ["gpu", "cuda"])
def test_accelerator_gpu_without_a_gpu_is_refused(tiny, tmp_path, capsys, name):
    data, targets = tiny
    rc = main(_distill(data, targets, tmp_path / "run", "--accelerator", name, *TINY))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"--accelerator {name}: torch sees no CUDA GPU here" in err
    assert not (tmp_path / "run").exists()


def test_library_settings_errors_name_the_setting():
    from echodfkd.distill.train import distill
    from echodfkd.errors import ModelError

    for kw, expected in ((dict(clips_per_epoch=0), "clips_per_epoch must be >= 1"),
                         (dict(cache_gb=-1.0), "cache_gb must be >= 0"),
                         (dict(precision="banana"), "precision must be one of fp32, bf16, auto"),
                         (dict(frame_size=7), "frame_size: frame size 7 must be a positive multiple of 8"),
                         (dict(banana=1), "unknown distillation setting(s): banana")):
        with pytest.raises(ModelError, match=re.escape(expected)):
            distill("nowhere", "nowhere", "nowhere", **kw)


def test_deprecated_spellings_warn_once_and_still_work(capsys):
    parser = build_parser()
    args = parser.parse_args(["distill", "--data", "d", "--targets", "t", "--out", "o", "--precision",
                              "bf16-mixed", "--workers", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert args.precision == "bf16" and args.workers == 3
    assert err == ["echodfkd distill: warning: --precision bf16-mixed is deprecated; use --precision bf16",
                   "echodfkd distill: warning: --workers is deprecated; use --loader-workers"]
    assert "bf16-mixed" not in parser._subparsers._group_actions[0].choices["distill"].format_help()


# ------------------------------------------------------------------------------------------ a real run
def test_summary_is_rounded_without_lightning_tips_and_truncated_checkpoint_is_one_line(tiny, tmp_path, capsys):
    data, targets = tiny
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("ECHODFKD_QUIET", None)  # Lightning's own output, as a user sees it
    proc = subprocess.run([sys.executable, "-m", "echodfkd", *_distill(data, targets, run, *TINY)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert "Tip:" not in output and "litlogger" not in output
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"{re.escape(str(run))}: student \(1,1\) 5,701 params, 1 epochs, best val loss \d\.\d{{4}}, "
                        r"thresholds dice \d\.\d{3} afd \d\.\d{3}", summary), summary

    # an unfinished run whose last.ckpt was cut short (a full disk, a copy interrupted)
    (run / "model.safetensors").unlink()
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    capsys.readouterr()
    rc = main(_distill(data, targets, run, *TINY, "--resume"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"{last}: unreadable checkpoint" in err and "delete" in err


def test_compile_failure_falls_back_to_eager_with_one_line(tiny, tmp_path, monkeypatch, caplog):
    from echodfkd.distill.train import distill
    from echodfkd.io.atomic import load_json

    def broken_compile(fn, **kw):
        def run(*args, **kwargs):
            raise RuntimeError("inductor: no working C++ compiler\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    data, targets = tiny
    with caplog.at_level("WARNING", logger="echodfkd.distill.module"):
        run = distill(data, targets, tmp_path / "run", blocks=1, frame_size=32, seq_len=6, batch_size=2, epochs=2,
                      compile=True)
    failures = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(failures) == 1 and "no working C++ compiler" in failures[0].getMessage()
    assert "\n" not in failures[0].getMessage()
    training = load_json(run / "config.json")["training"]
    assert training["compile"] is True and training["compiled"] is False and training["epochs_trained"] == 2


def test_fused_gate_update_has_the_plain_updates_values_and_gradients():
    from echodfkd.distill.fused import fused_update, use_fused_update
    from echodfkd.models.convlstm import ConvLSTMCell
    from echodfkd.models.student import Student

    g = torch.randn(2, 12, 3, 3, dtype=torch.double, requires_grad=True)
    c = torch.randn(2, 3, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(fused_update, (g, c))

    torch.manual_seed(0)
    plain, fused = Student(blocks=2, filters=4), Student(blocks=2, filters=4)
    fused.load_state_dict(plain.state_dict())
    assert use_fused_update(fused) == 2
    x = torch.rand(2, 5, 1, 16, 16) * 255
    for model in (plain, fused):
        model.zero_grad()
        model(x).square().mean().backward()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), plain(x))
    for (name, a), (_, b) in zip(plain.named_parameters(), fused.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert set(fused.state_dict()) == set(plain.state_dict())  # checkpoints unchanged
    assert ConvLSTMCell.update is not fused_update  # streaming keeps the plain update


def test_json_prints_only_the_runs_config_on_stdout(tiny, tmp_path, capsys):
    import json

    data, targets = tiny
    run = tmp_path / "run"
    assert main(_distill(data, targets, run, *TINY, "--json")) == 0
    record = json.loads(capsys.readouterr().out)  # progress went to stderr: stdout is one JSON document
    on_disk = json.loads((run / "config.json").read_text())
    assert record["blocks"] == 1 and record["training"]["epochs_trained"] == on_disk["training"]["epochs_trained"]
    assert record["thresholds"] == on_disk["thresholds"]
