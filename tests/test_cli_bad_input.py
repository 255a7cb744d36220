"""Bad input as a new user would try it: one clear line on stderr naming the file, exit != 0, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from echonet_folders import beating_clip, make_folder, standard_tracings

from echodfkd.cli import main
from echodfkd.io.video import write_video

ECHODFKD = Path(sys.executable).parent / "echodfkd"  # the console script of the running environment


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (echodfkd arguments, words the error line must contain)."""
    cases = {}
    cases["missing folder"] = (["check", str(tmp / "no_such_folder")], ["no_such_folder", "not found"])

    ds = make_folder(tmp / "nosplit", {"a": beating_clip(20, 32)}, tracings=standard_tracings("a"))
    pd.read_csv(ds / "FileList.csv").drop(columns="Split").to_csv(ds / "FileList.csv", index=False)
    cases["FileList missing a column"] = (["check", str(ds)], ["FileList.csv", "missing column", "Split"])

    rows = standard_tracings("a")
    rows[3] = ("a.avi", "12.5", "thirty", 40.0, 30.0, rows[3][5])
    ds = make_folder(tmp / "garbage", {"a": beating_clip(20, 32)}, tracings=rows)
    cases["VolumeTracings with garbage numbers"] = (["check", str(ds)], ["VolumeTracings.csv", "line 5", "thirty"])

    zero = tmp / "zero.avi"
    zero.write_bytes(b"")
    cases["zero-byte AVI"] = (["check", str(zero)], ["zero.avi", "empty file"])

    full = write_video(tmp / "full.avi", beating_clip(40, 64), fps=50)
    cut = tmp / "truncated.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    cases["truncated AVI"] = (["check", str(cut)], ["truncated.avi", "truncated"])

    text = tmp / "notes.avi"
    text.write_text("Patient notes, definitely not a video.\n" * 40)
    cases["text file renamed .avi"] = (["check", str(text)], ["notes.avi", "not a readable video"])

    # The same damaged AVI inside a dataset folder whose only clip it is: the folder is unusable.
    ds = make_folder(tmp / "onlybad", {"a": None}, tracings=standard_tracings("a"))
    (ds / "Videos" / "a.avi").write_bytes(b"")
    cases["folder whose only clip is a zero-byte AVI"] = (["check", str(ds)], ["a.avi", "no usable clip",
                                                                                "empty file"])
    return cases


CASES = ["missing folder", "FileList missing a column", "VolumeTracings with garbage numbers", "zero-byte AVI",
         "truncated AVI", "text file renamed .avi", "folder whose only clip is a zero-byte AVI"]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    return _bad_inputs(tmp_path_factory.mktemp("bad"))


def _assert_one_clear_line(rc: int, err: str, words: list[str]) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc != 0
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("echodfkd check: error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("case", CASES)
def test_bad_input_through_climain(bad_inputs, capsys, case):
    argv, words = bad_inputs[case]
    rc = main(argv)
    _assert_one_clear_line(rc, capsys.readouterr().err, words)


@pytest.mark.skipif(not ECHODFKD.exists(), reason="echodfkd console script not installed in this environment")
@pytest.mark.parametrize("case", ["missing folder", "VolumeTracings with garbage numbers", "truncated AVI"])
def test_bad_input_through_the_console_script(bad_inputs, case):
    argv, words = bad_inputs[case]
    env = dict(os.environ, ECHODFKD_QUIET="1")
    done = subprocess.run([str(ECHODFKD), *argv], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    _assert_one_clear_line(done.returncode, done.stderr, words)


def test_usable_folder_with_problem_clips_exits_zero(tmp_path, capsys):
    clips = {"good": beating_clip(30, 64), "short": beating_clip(8, 64), "gone": None}
    ds = make_folder(tmp_path / "ds", clips, tracings=standard_tracings("good") + standard_tracings("short", 1, 6))
    out = tmp_path / "corrupted.csv"
    assert main(["check", str(ds), "--csv", str(out), "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert "too_short" in captured.out and "missing_video" in captured.out and captured.err == ""
    table = pd.read_csv(out)
    assert set(zip(table.FileName, table.reason)) == {("short", "too_short"), ("gone", "missing_video"),
                                                       ("gone", "no_tracings")}
    assert main(["check", str(ds), "--json", "--workers", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["videos"] == 3 and data["traced"] == 2 and len(data["problems"]) == 3


def test_bad_option_values(tmp_path, capsys):
    ds = make_folder(tmp_path / "ds", {"a": beating_clip(20, 32)})
    assert main(["check", str(ds), "--workers", "0"]) == 2
    _assert_one_clear_line(2, capsys.readouterr().err, ["--workers"])


def test_single_good_video(tmp_path, capsys):
    path = write_video(tmp_path / "clip.avi", beating_clip(30, 64), fps=50)
    assert main(["check", str(path)]) == 0
    assert "no problem found" in capsys.readouterr().out
