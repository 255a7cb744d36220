"""`echodfkd info` and the FlopCounterMode GMAC count."""

from __future__ import annotations

import json

import pytest
import torch

from echodfkd.cli import main
from echodfkd.models import Student
from echodfkd.models.flops import count_gmac_per_frame
from echodfkd.teacher.model import Teacher, build_segmenter


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _json(capsys, argv):
    assert main(["info", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_reference_student_figures(capsys):
    row = _json(capsys, ["--blocks", "4", "--layers", "1"])
    assert {"blocks", "layers", "params", "gmac_per_frame"} <= set(row)
    assert row["params"] == 714_577
    assert row["gmac_per_frame"] == pytest.approx(0.461, abs=5e-4)
    assert _json(capsys, ["-B", "1", "-l", "1"])["params"] == 5_701
    half = _json(capsys, ["--size", "56"])
    assert half["gmac_per_frame"] == pytest.approx(row["gmac_per_frame"] / 4, rel=1e-4)
    assert _json(capsys, ["--skip"])["params"] > row["params"]


def test_grid(capsys):
    rows = _json(capsys, ["--grid"])
    assert [(r["blocks"], r["layers"]) for r in rows] == [(b, l) for b in range(1, 5) for l in range(1, 5)]
    assert all({"blocks", "layers", "params", "gmac_per_frame"} <= set(r) for r in rows)
    by_key = {(r["blocks"], r["layers"]): r for r in rows}
    assert by_key[(1, 1)]["params"] == 5_701 and by_key[(4, 1)]["params"] == 714_577
    assert main(["info", "--grid"]) == 0
    assert "714,577" in capsys.readouterr().out


def test_counts_match_real_models():
    # The CLI counts on the meta device; a real model must give the same figure.
    assert count_gmac_per_frame(Student(4, 1)) == pytest.approx(0.4608, abs=1e-4)
    with torch.device("meta"):
        deeplab = Teacher(build_segmenter("deeplabv3_resnet50"))
    assert count_gmac_per_frame(deeplab) == pytest.approx(7.83, abs=0.01)


def test_teacher_figures(capsys):
    row = _json(capsys, ["--teacher-arch", "lraspp_mobilenet_v3_large"])
    assert row["arch"] == "lraspp_mobilenet_v3_large" and row["params"] == 3_218_138
    assert 0.05 < row["gmac_per_frame"] < 0.2


@pytest.mark.parametrize("argv, needle", [
    (["--size", "100"], "multiple of 8"),
    (["--blocks", "0"], ">= 1"),
    (["--teacher-arch", "resnet"], "invalid choice: 'resnet'"),
    (["--size", "0"], "--size"),
    (["--teacher-arch", "fcn_resnet50", "--size", "0"], "--size"),
])
def test_bad_inputs(capsys, argv, needle):
    assert main(["info", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
