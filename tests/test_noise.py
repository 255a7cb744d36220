"""`echodfkd noise`: bounds and frame-label fit from two annotation rounds given as CSVs; bad CSVs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from echodfkd.cli import main
from echodfkd.evaluate.rounds import compare_rounds, read_round


def _write(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return path


@pytest.fixture
def rounds(tmp_path):
    """300 clips: true ED/ES frames + Laplace(2.4)/(2.0) annotator noise per round, EF + N(0, 3) noise."""
    rng = np.random.default_rng(0)
    n = 300
    ed, es = rng.integers(10, 100, n), rng.integers(10, 100, n)
    ef = rng.normal(55, 10, n)
    names = [f"clip{k:04d}" for k in range(n)]

    def one():
        return [[name, int(ed[k] + round(rng.laplace(0, 2.4))), int(es[k] + round(rng.laplace(0, 2.0))),
                 f"{ef[k] + rng.normal(0, 3):.3f}"] for k, name in enumerate(names)]

    r1, r2 = one(), one()
    r2 = r2[::-1] + [["only_in_two", 5, 6, "50"]]  # row order does not matter; an extra clip is left out
    r2[0][1] = ""                                   # a blank cell leaves that clip out of ED only
    return (_write(tmp_path / "r1.csv", ["FileName", "ED", "ES", "EF"], r1),
            _write(tmp_path / "r2.csv", ["FileName", "ED", "ES", "EF"], r2))


def test_noise_cli_prints_bounds_and_recovers_one_annotators_scale(rounds, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["noise", str(rounds[0]), str(rounds[1]), "--json", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["clips_matched"] == 300 and res["only_in_round2"] == 1 and res["only_in_round1"] == 0
    q = res["quantities"]
    assert q["ED"]["n"] == 299 and q["ED"]["blank"] == 1 and q["ES"]["n"] == 300
    assert q["ED"]["kind"].startswith("frame labels") and q["EF"]["kind"] == "measurement"
    assert "fit" not in q["EF"]
    # Each round's ED label is off by Laplace(2.4): the fit of Z1 − Z2 gives one annotator's E|X|.
    assert q["ED"]["fit"]["b"] == pytest.approx(2.4, rel=0.2)
    assert q["ES"]["fit"]["b"] == pytest.approx(2.0, rel=0.2)
    assert q["ED"]["fit"]["b"] > q["ES"]["fit"]["b"]
    # EF: σ = 3 per round, so the floor is ≈ 3 and the ceiling ≈ corr(Y, Z) = 10/√109.
    assert q["EF"]["rmse_floor"] == pytest.approx(3.0, rel=0.15)
    assert q["EF"]["correlation_ceiling"] == pytest.approx(10 / math.sqrt(109), abs=0.03)
    assert q["EF"]["rmse_floor"] == pytest.approx(q["EF"]["rmse"] / math.sqrt(2))
    md = (out / "noise.md").read_text()
    assert "| ED | frame labels (integers) | 299 |" in md and "E|X| = b =" in md
    assert sorted(res["figures"]) == ["figures/differences_ED.png", "figures/differences_ES.png"]
    assert (out / "figures" / "differences_ED.png").stat().st_size > 1000
    assert json.loads((out / "noise.json").read_text())["quantities"]["ES"]["n"] == 300


def test_noise_cli_reproduces_the_camus_figures(tmp_path, capsys):
    """RMSE 5.7 between rounds -> floor 4.03 (supp. §2); a small sample gets no fit, with the reason."""
    y = np.linspace(30, 70, 12)
    step = np.where(np.arange(12) % 2, 5.7, -5.7)
    a = _write(tmp_path / "a.csv", ["id", "EF", "ED"], [[f"c{k}", y[k], k] for k in range(12)])
    b = _write(tmp_path / "b.csv", ["id", "EF", "ED"], [[f"c{k}", y[k] + step[k], k + k % 3] for k in range(12)])
    assert main(["noise", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "EF (12 clips): RMSE 5.700 -> floor 4.031" in text
    assert "ED (12 clips)" in text and "left out (12 differences; the fit is left out below 30" in text
    assert main(["noise", str(a), str(b), "--columns", "ED", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["quantities"]) == ["ED"]


def test_compare_rounds_matches_by_key(tmp_path):
    a = read_round(_write(tmp_path / "a.csv", ["FileName", "ES"], [["x.avi", 1], ["y", 4], ["z", 9]]))
    b = read_round(_write(tmp_path / "b.csv", ["FileName", "ES"], [["z", 8], ["x", 1], ["y", 4]]))
    res = compare_rounds(a, b)
    assert res["clips_matched"] == 3 and res["quantities"]["ES"]["rmse"] == pytest.approx(math.sqrt(1 / 3))


@pytest.mark.parametrize("case, words", [
    ("missing", ["missing.csv", "not found"]),
    ("folder", ["is a folder"]),
    ("no_key", ["needs a key column FileName or id"]),
    ("text_cell", ["column 'ED', row 3", "'late'", "is not a number"]),
    ("duplicate", ["'c1' appears more than once"]),
    ("no_shared", ["share no value column"]),
    ("too_few", ["2 clip(s) in common", "at least 3"]),
    ("unknown_column", ["column 'EF' is not in both rounds"]),
    ("empty", ["not a readable CSV"]),
])
def test_bad_rounds_fail_in_one_line(tmp_path, capsys, case, words):
    good = _write(tmp_path / "good.csv", ["FileName", "ED"], [["c0", 1], ["c1", 2], ["c2", 3]])
    bad = {"missing": lambda: tmp_path / "missing.csv",
           "folder": lambda: tmp_path,
           "no_key": lambda: _write(tmp_path / "b.csv", ["clip", "ED"], [["c0", 1]]),
           "text_cell": lambda: _write(tmp_path / "b.csv", ["FileName", "ED"], [["c0", 1], ["c1", "late"]]),
           "duplicate": lambda: _write(tmp_path / "b.csv", ["FileName", "ED"], [["c1", 1], ["c1", 2]]),
           "no_shared": lambda: _write(tmp_path / "b.csv", ["FileName", "ES"], [["c0", 1], ["c1", 2], ["c2", 3]]),
           "too_few": lambda: _write(tmp_path / "b.csv", ["FileName", "ED"], [["c0", 1], ["c1", 2], ["c9", 3]]),
           "unknown_column": lambda: good,
           "empty": lambda: (tmp_path / "b.csv").write_text("") and None or tmp_path / "b.csv",
           }[case]()
    extra = ["--columns", "EF"] if case == "unknown_column" else []
    assert main(["noise", str(good), str(bad), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err, err
