"""`echodfkd reproduce` end to end on phantom folders standing in for EchoNet-Dynamic and EchoNet-Synthetic.

A randomly initialised lraspp_mobilenet_v3_large saved in EchoNet's checkpoint format (no arch recorded,
like the real deeplabv3_resnet50_random.pt) is the teacher; a tiny random open_clip model stands in for
EchoCLIP. Everything is 64x64, 32 frames per clip, one epoch, students (1,1) and (2,1).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from echodfkd.cli import main  # noqa: E402
from echodfkd.reproduce import Settings, parse_grid, step_list  # noqa: E402
from echodfkd.io.records import StepsJournal, StudentConfig  # noqa: E402
from echodfkd.reproduce.chain import distill_command  # noqa: E402

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "head_width": 64, "layers": 1, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1, "mlp_ratio": 2.0},
}
ARCH = "lraspp_mobilenet_v3_large"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest's: 1 torch thread for the module


def _set_splits(root: Path, splits: list[str]) -> None:
    table = pd.read_csv(root / "FileList.csv")
    table["Split"] = splits
    table.to_csv(root / "FileList.csv", index=False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Phantom EchoNet-Dynamic (5 TEST clips, 2 of them corrupted), phantom training clips, teacher, CLIP."""
    from echodfkd.data.phantom import generate_phantom
    from echodfkd.teacher.model import build_segmenter, save_echonet_checkpoint

    root = tmp_path_factory.mktemp("reproduce_inputs")
    dyn = generate_phantom(root / "dynamic", 6, style="dynamic", seed=1, size=64, frames=32, workers=1, corrupt=0.34)
    _set_splits(dyn, ["TEST"] * 5 + ["TRAIN"])
    syn = generate_phantom(root / "synthetic", 4, style="synthetic", seed=2, size=64, frames=32, workers=1)
    _set_splits(syn, ["TRAIN", "TRAIN", "TRAIN", "VAL"])
    torch.manual_seed(0)
    teacher = save_echonet_checkpoint(build_segmenter(ARCH), root / "teacher_random.pt")  # no arch recorded
    clip_dir = root / "clip"
    clip_dir.mkdir()
    (clip_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP}))
    (root / "echodfkd-reproduce-tiny.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(root / "echodfkd-reproduce-tiny.json")
    torch.save(open_clip.create_model("echodfkd-reproduce-tiny").state_dict(), clip_dir / "tiny.pt")
    return {"dynamic": dyn, "synthetic": syn, "teacher": teacher, "clip": clip_dir / "tiny.pt", "root": root}


def _args(inp: dict[str, Path], out: Path, *extra: str, grid: str = "1,2x1") -> list[str]:
    return ["reproduce", "--dynamic", str(inp["dynamic"]), "--synthetic", str(inp["synthetic"]),
            "--teacher", str(inp["teacher"]), "--teacher-arch", ARCH, "--grid", grid, "--epochs", "1",
            "--frame-size", "32", "--batch-size", "4", "--bootstrap", "50", "--overlays", "0", "--device", "cpu",
            "--workers", "1",
            "--out", str(out), *extra]


@pytest.fixture(scope="module")
def grown(inputs, tmp_path_factory) -> tuple[Path, str]:
    """A run of student (1,1) with EchoCLIP, then the same run grown to the grid (1,1)+(2,1); its log."""
    out = tmp_path_factory.mktemp("reproduce") / "out"
    assert main(_args(inputs, out, "--echoclip", str(inputs["clip"]), grid="1x1")) == 0
    import contextlib
    import io

    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        assert main(_args(inputs, out, "--echoclip", str(inputs["clip"]))) == 0
    return out, log.getvalue()


@pytest.fixture(scope="module")
def finished(grown) -> Path:
    """A finished reproduce run over the grid (1,1)+(2,1) with EchoCLIP."""
    return grown[0]


def _status(log: str, step: str) -> str:
    """'reused' or 'ran' for one step of a run's log."""
    line = log.split(f"[{step}]", 1)[1].splitlines()[0]
    return "reused" if "done before" in line else "ran"


def test_growing_the_grid_runs_only_the_new_steps_and_what_depends_on_them(grown):
    _, log = grown
    for name in ("check-dynamic", "check-training", "label-training", "label-test", "distill-b1_l1",
                 "predict-b1_l1", "evaluate-teacher", "evaluate-b1_l1"):
        assert _status(log, name) == "reused", name
    for name in ("distill-b2_l1", "predict-b2_l1", "evaluate-b2_l1", "scaling", "echoclip", "report"):
        assert _status(log, name) == "ran", name


def test_run_writes_the_report_with_every_part(finished):
    metrics = json.loads((finished / "metrics.json").read_text())
    for key in ("inputs", "checks", "table1", "table2", "students", "main_student", "sampling_rate",
                "error_concentration", "scaling_laws", "echoclip", "paper", "reports", "steps_seconds"):
        assert key in metrics, key
    assert set(metrics["students"]) == {"b1_l1", "b2_l1"}
    assert metrics["main_student"] in metrics["students"]  # (4,1) not trained: lowest val loss
    assert metrics["students"]["b1_l1"]["params"] == 5701
    # The check found the phantom's two corrupted clips; the clean subset leaves them out, the full set keeps all.
    assert metrics["checks"]["dynamic"]["videos"] == 6 and metrics["checks"]["dynamic"]["problem_clips"] == 2
    teacher_row = metrics["table2"][0]
    assert teacher_row["full"]["n_clips"] == 5 and teacher_row["clean"]["n_clips"] == 3
    methods = [r["method"] for r in metrics["table2"]]
    assert any("find_peaks" in m for m in methods) and "EchoDFKD (2,1)" in methods
    assert metrics["table1"][0]["model"] == f"Teacher ({ARCH})" and metrics["table1"][0]["n_videos"] == 5
    assert set(metrics["scaling_laws"]) >= {"dice", "iou"}
    assert set(metrics["echoclip"]["models"]) >= {"teacher_test", "predictions/b1_l1", "predictions/b2_l1"}
    for link in [*metrics["reports"].values(), *metrics["figures"]]:
        assert (finished / link).exists(), link
    assert any("scaling_laws" in f for f in metrics["figures"])
    report = (finished / "report.md").read_text()
    for heading in ("Table 1", "Table 2", "Dataset checks", "Scaling laws", "EchoCLIP", "Figures", "Sub-reports"):
        assert heading in report
    journal = StepsJournal.read(finished)
    settings = Settings(dynamic="d", synthetic="s", teacher="t", out=finished, grid=[(1, 1), (2, 1)], echoclip="x")
    assert set(journal.steps) == {name for name, _ in step_list(settings)} and journal.stale == []
    # The journal records the declared graph: a student's evaluation reads its predictions and the check.
    assert set(journal.steps["evaluate-b2_l1"].depends_on) == {"check-dynamic", "label-test", "predict-b2_l1"}
    predict = journal.steps["predict-b2_l1"].summary
    assert predict["clips"] == 5 and predict["streamed_frames"] > 0 and predict["stream_fps"] > 0
    # Predictions carry the student's config (EchoCLIP's scores-by-size table reads the parameter count).
    assert StudentConfig.read(finished / "predictions" / "b2_l1").blocks == 2
    # Every record of the folder reads back with its typed reader and the files it names exist.
    assert main(["check-run", str(finished)]) == 0


def test_rerun_skips_every_step(inputs, finished, capsys):
    before = {p: p.stat().st_mtime_ns for p in (finished / "steps.json", finished / "report.md")}
    capsys.readouterr()
    assert main(_args(inputs, finished, "--echoclip", str(inputs["clip"]))) == 0
    err = capsys.readouterr().err
    for name in StepsJournal.read(finished).steps:
        assert _status(err, name) == "reused", name
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_dry_run_prints_the_plan_and_writes_nothing(inputs, finished, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(_args(inputs, out, "--dry-run")) == 0
    plan = capsys.readouterr().out
    assert not out.exists()
    for name in ("check-dynamic", "label-training", "distill-b2_l1", "predict-b1_l1", "evaluate-teacher", "report"):
        assert name in plan
    assert "to run" in plan and "measured on:" in plan and "TMAC" in plan
    # Same plan over the finished run: every step is done (and nothing is written there either).
    before = sorted(p.name for p in finished.iterdir())
    assert main(_args(inputs, finished, "--dry-run", "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["steps"] and all(s["done"] for s in data["steps"])
    assert sorted(p.name for p in finished.iterdir()) == before
    label = next(s for s in data["steps"] if s["name"] == "label-training")
    assert label["clips"] == 4 and label["frames"] == 4 * 32
    assert next(s for s in data["steps"] if s["name"] == "label-test")["frames"] == 5 * 32


def test_other_ranks_wait_for_the_labels_then_join_the_distillation(inputs, finished, monkeypatch, capsys):
    """Under torchrun, a rank > 0 waits for rank 0's labels, joins unfinished distillations, then stops."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    before = (finished / "steps.json").read_text()
    assert main(_args(inputs, finished)) == 0
    assert "rank 1: distillation done" in capsys.readouterr().err
    assert (finished / "steps.json").read_text() == before  # only rank 0 records steps


def test_shards_label_their_share_and_stop(inputs, tmp_path, capsys):
    out = tmp_path / "sharded"
    for i in range(2):
        assert main(_args(inputs, out, "--shard", f"{i}/2")) == 0
    err = capsys.readouterr().err
    assert "run the same command without --shard" in err
    assert len(list((out / "targets").glob("*.npz"))) == 4  # 3 TRAIN + 1 VAL training clips
    assert len(list((out / "teacher_test").glob("*.npz"))) == 5
    assert not (out / "steps.json").exists() and not (out / "runs").exists()


def test_rerun_with_other_settings_is_refused(inputs, finished, capsys):
    assert main(_args(inputs, finished, "--epochs", "2")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other settings" in err and "epochs" in err


def _refused(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_refuses_a_synthetic_folder_as_dynamic(inputs, tmp_path, capsys):
    args = _args(inputs, tmp_path / "o", "--dry-run")
    args[args.index("--dynamic") + 1] = str(inputs["synthetic"])
    assert "VolumeTracings.csv" in _refused(args, capsys)
    assert not (tmp_path / "o").exists()


def test_refuses_a_teacher_of_another_architecture(inputs, tmp_path, capsys):
    args = _args(inputs, tmp_path / "o", "--dry-run")
    i = args.index("--teacher-arch")
    del args[i:i + 2]  # the checkpoint records no arch: EchoNet's deeplabv3_resnet50 is assumed
    err = _refused(args, capsys)
    assert "do not fit" in err and f"--teacher-arch {ARCH}" in err
    assert not (tmp_path / "o").exists()


def test_tracings_in_the_training_folder_are_accepted_with_a_note(inputs, tmp_path, capsys):
    traced = Path(shutil.copytree(inputs["dynamic"], tmp_path / "traced"))
    _set_splits(traced, ["TEST"] * 3 + ["TRAIN", "VAL", "TRAIN"])
    args = _args(inputs, tmp_path / "o", "--dry-run")
    args[args.index("--synthetic") + 1] = str(traced)
    assert main(args) == 0
    assert "not the paper's data-free setting" in capsys.readouterr().out


def test_several_nodes_need_a_launcher(inputs, tmp_path, capsys, monkeypatch):
    for var in ("WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    err = _refused(_args(inputs, tmp_path / "o", "--num-nodes", "2"), capsys)
    assert "torchrun" in err and not (tmp_path / "o").exists()


def test_grid_parsing_and_child_distill_command(tmp_path):
    assert parse_grid("1-4x1-4") == [(b, l) for b in range(1, 5) for l in range(1, 5)]
    assert parse_grid("4x1") == [(4, 1)] and parse_grid("1,3x2") == [(1, 2), (3, 2)]
    with pytest.raises(Exception, match="BLOCKSxLAYERS"):
        parse_grid("4")
    cmd = distill_command(tmp_path / "d", tmp_path / "t", tmp_path / "r", 4, 1,
                          {"devices": 2, "strategy": "ddp", "infer_size": None, "frame_size": 56})
    assert cmd[1:4] == ["-m", "echodfkd", "distill"] and "--resume" not in cmd  # nothing to resume yet
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    (tmp_path / "r" / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert "--resume" in distill_command(tmp_path / "d", tmp_path / "t", tmp_path / "r", 4, 1, {})
    assert cmd[cmd.index("--devices") + 1] == "2" and cmd[cmd.index("--frame-size") + 1] == "56"
    assert "--infer-size" not in cmd
