"""Bad input for every sub-command, as a new user would try it (issue 16's probe classes, as a test matrix).

Each case runs `echodfkd.cli.main` in-process (a few through the console script) and must end with a
non-zero exit, exactly one line on stderr (file descriptor 2, so a C library's chatter counts too), no
"Traceback", and nothing half-written where the output was asked for. The classes: a missing path, a value
of the wrong type, a text file named .avi, numbers out of range, an output that is a file, and an output
that cannot be written (tests run as root, for whom chmod 0o500 stops nothing: the unwritable place is a
path under a file). Every case fails at validation, before any model is trained or loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from echonet_folders import beating_clip, make_folder, standard_tracings

from echodfkd.cli import build_parser, main

ECHODFKD = Path(sys.executable).parent / "echodfkd"  # the console script of the running environment


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> dict[str, Path]:
    """The places the cases name: a tiny dataset, a student run, a checkpoint file, a text '.avi', a blocker file."""
    from echodfkd.models import Student

    root = tmp_path_factory.mktemp("matrix")
    clips = {"a": beating_clip(20, 32), "b": beating_clip(20, 32, seed=1)}
    data = make_folder(root / "data", clips, splits={"a": "TRAIN", "b": "TEST"},
                       tracings=standard_tracings("a", size=32) + standard_tracings("b", size=32))
    run = root / "run"
    Student(blocks=2, filters=4).save_pretrained(run, extra_config={"thresholds": {"dice": 0.5, "afd": 0.5}})
    ckpt = root / "teacher.pt"
    ckpt.write_bytes(b"")  # only has to exist: every case is refused before it is read
    text = root / "notes.avi"
    text.write_text("Patient notes, definitely not a video.\n" * 40)
    stub = root / "stub.avi"  # an AVI cut after its first 300 bytes: OpenCV's parser used to print on fd 2
    stub.write_bytes((data / "Videos" / "a.avi").read_bytes()[:300])
    blocker = root / "blocker"
    blocker.write_text("a file where a folder is wanted\n")
    csv = root / "round.csv"
    csv.write_text("FileName,ED\na,1\nb,2\n")
    return {"data": data, "run": run, "ckpt": ckpt, "text": text, "stub": stub, "blocker": blocker, "csv": csv,
            "missing": root / "no_such_thing", "video": data / "Videos" / "a.avi", "root": root}


# (command words, arguments with {placeholders}, words the error line must hold). {out} is a fresh folder
# path per case; the output cases replace it with the blocker file or a path under it.
D, R, O = "{data}", "{run}", "{out}"
CASES: dict[str, tuple[list[str], list[str]]] = {
    # ------------------------------------------------------------------ missing paths
    "check missing": (["check", "{missing}"], ["no_such_thing", "not found"]),
    "label missing data": (["label", "{missing}", "--teacher", "{ckpt}", "--out", O], ["no_such_thing", "not found"]),
    "label missing teacher": (["label", D, "--teacher", "{missing}", "--out", O], ["no_such_thing", "file not found"]),
    "teacher train missing": (["teacher", "train", "{missing}", "--out", O], ["no_such_thing", "not found"]),
    "teacher info missing": (["teacher", "info", "{missing}"], ["no_such_thing", "not found"]),
    "distill missing data": (["distill", "--data", "{missing}", "--targets", D, "--out", O], ["no_such_thing"]),
    "sweep missing data": (["sweep", "--data", "{missing}", "--targets", D, "--out", O], ["no_such_thing"]),
    "search missing data": (["search", "--data", "{missing}", "--targets", D, "--out", O], ["no_such_thing"]),
    "predict missing input": (["predict", "{missing}", "--student", R, "--out", O], ["no_such_thing", "not found"]),
    "predict missing run": (["predict", D, "--student", "{missing}", "--out", O], ["--student", "not found"]),
    "export missing run": (["export", "--student", "{missing}"], ["--student", "not found"]),
    "evaluate missing data": (["evaluate", "--data", "{missing}", "--predictions", D, "--out", O], ["not found"]),
    "evaluate missing predictions": (["evaluate", "--data", D, "--predictions", "{missing}", "--out", O],
                                     ["--predictions", "not found"]),
    "camus missing": (["camus", "--data", "{missing}", "--student", R, "--out", O], ["no_such_thing", "not found"]),
    "report missing": (["report", "{missing}", "--out", O], ["no_such_thing", "not found"]),
    "echoclip missing data": (["echoclip", "--data", "{missing}", "--predictions", D, "--out", O],
                              ["no_such_thing", "not found"]),
    "noise missing": (["noise", "{missing}", "{csv}"], ["no_such_thing"]),
    "reproduce missing": (["reproduce", "--dynamic", "{missing}", "--synthetic", D, "--teacher", "{ckpt}",
                           "--out", O], ["--dynamic", "not found"]),
    "convert missing": (["convert", "{missing}", "--out", O], ["no_such_thing"]),
    "serve missing run": (["serve", "--student", "{missing}"], ["--student", "not found"]),
    "bench missing run": (["bench", "--student", "{missing}"], ["--student", "not found"]),
    "check-run missing": (["check-run", "{missing}"], ["no_such_thing", "not found"]),
    # ------------------------------------------------------------------ wrong types
    "check file as data": (["check", "{csv}"], ["round.csv"]),
    "label file as data": (["label", "{csv}", "--teacher", "{ckpt}", "--out", O], ["round.csv", "not a folder"]),
    "label folder as teacher": (["label", D, "--teacher", D, "--out", O], ["--teacher", "is a folder"]),
    "predict run is a file": (["predict", D, "--student", "{csv}", "--out", O], ["--student", "not a folder"]),
    "teacher train batch text": (["teacher", "train", D, "--out", O, "--batch-size", "many"],
                                 ["--batch-size", "'many'"]),
    "phantom videos text": (["phantom", "--out", O, "--videos", "ten"], ["--videos", "'ten'"]),
    "info blocks float": (["info", "--blocks", "2.5"], ["--blocks", "'2.5'"]),
    "label device banana": (["label", D, "--teacher", "{ckpt}", "--out", O, "--device", "banana"],
                            ["unknown device 'banana'"]),
    "predict precision banana": (["predict", D, "--student", R, "--out", O, "--precision", "banana"],
                                 ["--precision", "banana"]),
    "echoclip device cuda:x": (["echoclip", "--data", D, "--predictions", D, "--out", O, "--device", "cuda:x"],
                               ["unknown device"]),
    "demo teacher-arch banana": (["demo", "--out", O, "--teacher-arch", "banana"], ["--teacher-arch", "banana"]),
    "info teacher-arch banana": (["info", "--teacher-arch", "banana"], ["--teacher-arch", "banana"]),
    "reproduce device banana": (["reproduce", "--dynamic", D, "--synthetic", D, "--teacher", "{ckpt}",
                                 "--out", O, "--device", "banana"], ["unknown device"]),
    "serve port text": (["serve", "--student", R, "--port", "http"], ["--port", "'http'"]),
    # ------------------------------------------------------------------ a text file named .avi
    "check text avi": (["check", "{text}"], ["notes.avi", "not a readable video"]),
    "predict text avi": (["predict", "{text}", "--student", R, "--out", O], ["notes.avi"]),
    "convert text avi": (["convert", "{text}", "--out", O], ["notes.avi"]),
    "check avi header only": (["check", "{stub}"], ["stub.avi", "not a readable video"]),
    "predict avi header only": (["predict", "{stub}", "--student", R, "--out", O], ["stub.avi"]),
    # ------------------------------------------------------------------ out-of-range numbers
    "teacher info size 0": (["teacher", "info", "{ckpt}", "--size", "0"], ["--size", "'0'"]),
    "teacher train lr -1": (["teacher", "train", D, "--out", O, "--lr", "-1"], ["--lr", "'-1'"]),
    "teacher train size 7": (["teacher", "train", D, "--out", O, "--size", "7"], ["--size", "'7'"]),
    "teacher train augment 3": (["teacher", "train", D, "--out", O, "--augment", "3"], ["--augment", "'3'"]),
    "label batch 0": (["label", D, "--teacher", "{ckpt}", "--out", O, "--batch-size", "0"], ["--batch-size"]),
    "check workers 0": (["check", D, "--workers", "0"], ["--workers", "'0'"]),
    "check fps -1": (["check", D, "--fps", "-1"], ["--fps", "'-1'"]),
    "phantom corrupt 2": (["phantom", "--out", O, "--corrupt", "2"], ["--corrupt", "'2'"]),
    "phantom frames 10": (["phantom", "--out", O, "--frames", "10", "--videos", "1"], ["--frames"]),
    "phantom fps 0": (["phantom", "--out", O, "--fps", "0"], ["--fps", "'0'"]),
    "demo seed -1": (["demo", "--out", O, "--seed", "-1"], ["--seed", "'-1'"]),
    "demo workers 0": (["demo", "--out", O, "--workers", "0"], ["--workers", "'0'"]),
    "search startup -1": (["search", "--data", D, "--targets", D, "--out", O, "--startup-trials", "-1"],
                          ["--startup-trials", "'-1'"]),
    "search trials 0": (["search", "--data", D, "--targets", D, "--out", O, "--trials", "0"], ["--trials", "'0'"]),
    "sweep frame size 7": (["sweep", "--data", D, "--targets", D, "--out", O, "--frame-size", "7"],
                           ["--frame-size", "7"]),
    "predict size 0": (["predict", D, "--student", R, "--out", O, "--size", "0"], ["--size", "'0'"]),
    "predict threshold 1.5": (["predict", D, "--student", R, "--out", O, "--threshold", "1.5"], ["--threshold"]),
    "predict warmup -1": (["predict", D, "--student", R, "--out", O, "--warmup", "-1"], ["--warmup"]),
    "export size 0": (["export", "--student", R, "--size", "0"], ["--size", "'0'"]),
    "export size 31": (["export", "--student", R, "--size", "31"], ["--size 31", "multiple of 2"]),
    "export check-frames -1": (["export", "--student", R, "--check-frames", "-1"], ["--check-frames", "'-1'"]),
    "export tolerance -1": (["export", "--student", R, "--tolerance", "-1"], ["--tolerance", "'-1'"]),
    "evaluate overlays -1": (["evaluate", "--data", D, "--predictions", D, "--out", O, "--overlays", "-1"],
                             ["--overlays", "'-1'"]),
    "evaluate bootstrap 0": (["evaluate", "--data", D, "--predictions", D, "--out", O, "--bootstrap", "0"],
                             ["--bootstrap"]),
    "camus threshold 2": (["camus", "--data", D, "--student", R, "--out", O, "--threshold", "2"], ["--threshold"]),
    "echoclip threshold -1": (["echoclip", "--data", D, "--predictions", D, "--out", O, "--threshold", "-1"],
                              ["--threshold"]),
    "info size 0": (["info", "--size", "0"], ["--size", "'0'"]),
    "info size 100": (["info", "--size", "100"], ["--size 100", "multiple of 8"]),
    "reproduce frame size 30": (["reproduce", "--dynamic", D, "--synthetic", D, "--teacher", "{ckpt}", "--out", O,
                                 "--frame-size", "30"], ["--frame-size 30", "multiple of 8"]),
    "reproduce epochs 0": (["reproduce", "--dynamic", D, "--synthetic", D, "--teacher", "{ckpt}", "--out", O,
                            "--epochs", "0"], ["--epochs"]),
    "serve port 0": (["serve", "--student", R, "--port", "0"], ["--port", "'0'"]),
    "serve upload -5": (["serve", "--student", R, "--max-upload-mb", "-5"], ["--max-upload-mb"]),
    "bench frames 0": (["bench", "--frames", "0"], ["--frames", "'0'"]),
    "noise bad column": (["noise", "{csv}", "{csv}", "--columns", "EF"], ["EF"]),
    "convert fps nan": (["convert", "{video}", "--out", O, "--fps", "nan"], ["--fps", "'nan'"]),
    "distill precision banana": (["distill", "--data", D, "--targets", D, "--out", O, "--precision", "banana"],
                                 ["--precision", "banana"]),
}

# Output places: each writing command, with the output it is given ({out} replaced).
WRITERS: dict[str, list[str]] = {
    "phantom": ["phantom", "--out", O, "--videos", "1", "--frames", "16", "--size", "32"],
    "demo": ["demo", "--out", O, "--quick"],
    "check": ["check", D, "--csv", O],
    "label": ["label", D, "--teacher", "{ckpt}", "--out", O],
    "teacher train": ["teacher", "train", D, "--out", O],
    "distill": ["distill", "--data", D, "--targets", D, "--out", O],
    "sweep": ["sweep", "--data", D, "--targets", D, "--out", O],
    "search": ["search", "--data", D, "--targets", D, "--out", O],
    "predict": ["predict", D, "--student", R, "--out", O],
    "export": ["export", "--student", R, "--out", O],
    "evaluate": ["evaluate", "--data", D, "--predictions", D, "--out", O],
    "camus": ["camus", "--data", D, "--student", R, "--out", O],
    "report": ["report", D, "--out", O],
    "echoclip": ["echoclip", "--data", D, "--predictions", D, "--out", O],
    "noise": ["noise", "{csv}", "{csv}", "--out", O],
    "reproduce": ["reproduce", "--dynamic", D, "--synthetic", D, "--teacher", "{ckpt}", "--out", O],
    "reproduce --dry-run": ["reproduce", "--dynamic", D, "--synthetic", D, "--teacher", "{ckpt}", "--out", O,
                            "--dry-run"],
    "convert": ["convert", "{video}", "--out", O],
}
for _name, _argv in WRITERS.items():
    if _name != "check":  # check --csv names a file: its wrong-kind output is a folder
        CASES[f"{_name} out is a file"] = (_argv, ["blocker"])
    CASES[f"{_name} out unwritable"] = (_argv, ["blocker"])
CASES["check csv is a folder"] = (["check", D, "--csv", "{root}"], ["is a folder", "--csv"])

# Commands that write nothing (no output class applies to them).
READ_ONLY = {"info", "teacher info", "bench", "serve", "check-run"}
# Command paths that only group others.
GROUPS = {"teacher"}

def _argv(template: list[str], w: dict[str, Path], out: Path) -> list[str]:
    values = {k: str(v) for k, v in w.items()} | {"out": str(out)}
    return [a.format(**values) for a in template]


def _out_for(case: str, w: dict[str, Path], tmp_path: Path) -> Path:
    if case.endswith("out is a file"):
        return w["blocker"]
    if case.endswith("out unwritable"):
        return w["blocker"] / "sub" / "out"  # under a file: refused even for root
    return tmp_path / "out"


def _check_one_line(rc: int, err: str, words: list[str], case: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc not in (0, None), f"{case}: exit {rc}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"{case}: {len(lines)} lines on stderr:\n{err}"
    assert ": error: " in lines[0], lines[0]
    for word in words:
        assert word in lines[0], (case, word, lines[0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_through_cli_main(case, w, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("ECHODFKD_QUIET", "1")
    template, words = CASES[case]
    out = _out_for(case, w, tmp_path)
    before = w["blocker"].read_text()
    capfd.readouterr()
    rc = main(_argv(template, w, out))
    captured = capfd.readouterr()
    _check_one_line(rc, captured.err, words, case)
    assert w["blocker"].read_text() == before  # an output that is a file is left alone
    fresh = tmp_path / "out"
    assert not fresh.exists(), f"{case}: left {sorted(fresh.rglob('*'))} (a refused run leaves no folder)"
    assert not (w["root"] / "data" / "targets").exists()


def test_every_sub_command_has_its_classes():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
    try:
        import gen_cli
    finally:
        sys.path.pop(0)
    commands = [full.removeprefix("echodfkd ") for full, _ in gen_cli._walk(build_parser(), "echodfkd")]
    missing = []
    for command in commands:
        if command in GROUPS:
            continue
        mine = [c for c, (argv, _) in CASES.items() if " ".join(argv[:2]).startswith(command)
                and (command != "teacher" and (argv[0] != "teacher" or argv[1] == command.split()[-1]))]
        if not mine:
            missing.append(f"{command}: no case")
        if command not in READ_ONLY and command not in WRITERS:
            missing.append(f"{command}: no output case")
    assert not missing, missing


@pytest.mark.skipif(not ECHODFKD.exists(), reason="echodfkd console script not installed in this environment")
@pytest.mark.parametrize("case", ["check text avi", "check avi header only", "phantom out unwritable", "demo seed -1", "search missing data",
                                  "export tolerance -1", "teacher info size 0"])
def test_bad_input_through_the_console_script(case, w, tmp_path):
    template, words = CASES[case]
    out = _out_for(case, w, tmp_path)
    env = dict(os.environ, ECHODFKD_QUIET="1")
    done = subprocess.run([str(ECHODFKD), *_argv(template, w, out)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2
    _check_one_line(done.returncode, done.stderr, words, case)
    assert not (tmp_path / "out").exists()


def test_deprecated_spelling_warns_in_one_line_and_still_works(w, tmp_path, capfd):
    rc = main(["info", "--teacher", "lraspp_mobilenet_v3_large", "--size", "64", "--json"])
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 0 and err == ["echodfkd info: warning: --teacher is deprecated; use --teacher-arch"]
    rc = main(["check", str(w["data"]), "--out", str(tmp_path / "c.csv")])
    captured = capfd.readouterr()
    assert rc == 0 and (tmp_path / "c.csv").is_file()
    assert "echodfkd check: warning: --out is deprecated; use --csv" in captured.err


def test_messages_name_the_flag_the_user_typed(w, tmp_path, capfd):
    """`phantom: error: phantom:`, `fps_override must be ...`: the line names the flag, once."""
    rc = main(["phantom", "--out", str(tmp_path / "p"), "--frames", "20", "--fps", "50", "--videos", "1"])
    err = capfd.readouterr().err
    assert rc == 2 and "phantom: error: phantom:" not in err and "--frames 20" in err
    from echodfkd.data.synthetic import EchoNetSynthetic  # the --fps override of a folder without tracings
    from echodfkd.errors import DatasetError

    with pytest.raises(DatasetError, match="--fps must be a positive frame rate") as exc:
        EchoNetSynthetic(w["data"], fps_override=-1)
    assert "fps_override" not in str(exc.value)


# ---------------------------------------------------------------------- records and files the library reads
@pytest.fixture(scope="module")
def library_cases(w) -> dict[str, tuple[list[str], list[str]]]:
    """Bad records inside otherwise good inputs: the library must refuse them in one line too."""
    import json

    import torch

    from echodfkd.teacher.model import Teacher, build_segmenter, save_echonet_checkpoint

    root = w["root"]
    neg = make_folder(root / "negfps", {"a": beating_clip(20, 32)}, tracings=standard_tracings("a", size=32))
    table = (neg / "FileList.csv").read_text().splitlines()
    col = table[0].split(",").index("FPS")
    cells = table[1].split(",")
    cells[col] = "-50"
    (neg / "FileList.csv").write_text("\n".join([table[0], ",".join(cells)]) + "\n")
    typed = root / "typed_run"
    typed.mkdir()
    config = json.loads((w["run"] / "config.json").read_text())
    (typed / "config.json").write_text(json.dumps({**config, "blocks": "four"}))
    (typed / "model.safetensors").write_bytes((w["run"] / "model.safetensors").read_bytes())
    whole = root / "whole.pt"
    torch.manual_seed(0)
    save_echonet_checkpoint(Teacher(build_segmenter("lraspp_mobilenet_v3_large"), arch="lraspp_mobilenet_v3_large"),
                            whole)
    cut = root / "truncated.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    return {
        "check negative FPS": (["check", str(neg)], ["FPS"]),
        "predict negative FPS": (["predict", str(neg), "--student", str(w["run"]), "--out", "{out}"], ["FPS"]),
        "predict config blocks text": (["predict", str(w["video"]), "--student", str(typed), "--out", "{out}"],
                                       ["config.json", "blocks"]),
        "teacher info truncated": (["teacher", "info", str(cut)], ["truncated.pt"]),
        "label truncated teacher": (["label", str(w["data"]), "--teacher", str(cut), "--out", "{out}"],
                                    ["truncated.pt"]),
        "label rv without LV masks": (["label", str(w["data"]), "--teacher", str(whole), "--out", "{out}",
                                       "--channel", "rv"], ["masks"]),
    }


LIBRARY_CASES = ["check negative FPS", "predict negative FPS", "predict config blocks text",
                 "teacher info truncated", "label truncated teacher", "label rv without LV masks"]


@pytest.mark.parametrize("case", LIBRARY_CASES)
def test_bad_records_are_one_line(case, library_cases, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("ECHODFKD_QUIET", "1")
    template, words = library_cases[case]
    capfd.readouterr()
    rc = main([a.format(out=tmp_path / "out") for a in template])
    err = capfd.readouterr().err
    _check_one_line(rc, err, words, case)
    assert "(105)" not in err and "KeyError" not in err  # no bare exception codes in the line
    out = tmp_path / "out"
    assert not out.exists(), f"{case}: left {sorted(out.rglob('*'))} (a refused run leaves no folder)"
