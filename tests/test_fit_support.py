"""Fits and plots that state their support: the small-sample label-noise fit, r from 3 clips up, EF outside
0-100 %, scaling-law intervals, the one-bin FPS note and reproduce's teacher-Dice warning."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from echodfkd.evaluate.analysis import ef_agreement, fps_bins_note
from echodfkd.evaluate.noise import MIN_FIT_N, fit_laplace_uniform, fit_or_reason
from echodfkd.evaluate.scaling import MIN_INTERVAL_N, fit_loglog, scaling_laws
from echodfkd.report import figures
from echodfkd.report.evaluation import _ef_section, _label_noise_section, _markdown

SEEDS = range(100)
TRUE_B = 2.4


def _rounded(n: int, seed: int) -> np.ndarray:
    return np.round(np.random.default_rng(seed).laplace(0.0, TRUE_B, n))


@pytest.fixture(scope="module")
def fits() -> dict[int, list[dict]]:
    """Fits of rounded Laplace(0, 2.4) draws (integer frame differences) at n = 12, 30 (MIN_FIT_N) and 100."""
    return {n: [fit_laplace_uniform(_rounded(n, s)) for s in SEEDS] for n in sorted({12, MIN_FIT_N, 30, 100})}


@pytest.mark.parametrize("n", [12, 30, 100])
def test_laplace_fit_on_rounded_draws_never_collapses(fits, n):
    b = np.array([f["b"] for f in fits[n]])
    ll = np.array([f["loglik"] for f in fits[n]])
    assert (b > 0.5).all(), f"scale collapsed at n={n}: {np.sort(b)[:3]}"    # a quarter of the truth or more
    assert np.isfinite(ll).all() and (ll <= 0).all()   # a discretised likelihood is a probability
    assert all(f["likelihood"].startswith("discretised") for f in fits[n])
    assert all(f["w"] < 0.5 for f in fits[n])           # never "everything is a give-up"


def test_laplace_fit_recovers_the_scale_at_n_100(fits):
    b = np.array([f["b"] for f in fits[100]])
    assert np.median(b) == pytest.approx(TRUE_B, rel=0.1)
    assert (np.abs(b / TRUE_B - 1) < 0.3).all()


def test_min_fit_n_is_where_the_scale_becomes_stable(fits):
    """From MIN_FIT_N on, b is within ±50 % of the truth on 95 % of seeds; at n = 12 it is not, hence left out."""
    within = {n: np.mean([abs(f["b"] / TRUE_B - 1) < 0.5 for f in fits[n]]) for n in fits}
    assert within[MIN_FIT_N] >= 0.95 and within[100] == 1.0
    assert within[12] < 0.95
    small = fit_or_reason(_rounded(12, 0))
    assert small["n"] == 12 and "left out below" in small["left_out"] and "b" not in small
    assert "b" in fit_or_reason(_rounded(MIN_FIT_N, 0))


def test_continuous_differences_keep_the_continuous_density():
    d = np.random.default_rng(3).laplace(0.0, 2.0, 400)
    fit = fit_laplace_uniform(d)
    assert fit["likelihood"] == "continuous density" and fit["b"] == pytest.approx(2.0, rel=0.15)


def test_report_says_why_a_noise_fit_is_left_out():
    noise = {"ED": dict(fit_laplace_uniform(_rounded(40, 1)), source="found - human"),
             "ES": dict(fit_or_reason(_rounded(12, 1)), source="found - human")}
    text = "\n".join(_label_noise_section(noise))
    assert "| ED | found - human | 40 |" in text
    assert "ES: no fit (12 differences; the fit is left out below 30" in text
    assert "b 0.00" not in text


def test_no_correlation_from_two_clips_and_ef_outside_range_is_flagged(tmp_path):
    two = ef_agreement([52.0, -8.0], [50.0, 40.0])
    assert two["pearson_r"] is None and "2 clip(s)" in two["pearson_r_note"]
    assert two["n_outside_range"] == 1 and two["mae"] == pytest.approx((2 + 48) / 2)
    three = ef_agreement([52.0, 62.0, 105.0], [50.0, 60.0, 70.0])
    assert three["pearson_r"] is not None and three["n_outside_range"] == 1
    text = "\n".join(_ef_section({"area_at_found_frames": two}))
    assert "Pearson r not computed from 2 clip(s) (needs 3)" in text and "outside 0-100 %" in text
    png = figures.ef_scatter({"area": np.array([52.0, -8.0])}, np.array([50.0, 40.0]), {"area": two},
                             tmp_path / "ef.png")
    assert png.stat().st_size > 1000


def test_scaling_slope_interval_only_from_three_runs(tmp_path):
    two = fit_loglog([1e4, 1e5], [1.0, 2.0])
    assert two["slope"] == pytest.approx(1 / math.log(10))
    assert two["slope_ci90"] is None and two["r2"] is None and "2 runs" in two["note"]
    rng = np.random.default_rng(0)
    p = np.array([1e4, 3e4, 1e5, 3e5])
    three = fit_loglog(p[:MIN_INTERVAL_N], 0.1 * np.log(p[:MIN_INTERVAL_N]) + rng.normal(0, 0.01, 3))
    lo, hi = three["slope_ci90"]
    assert lo < three["slope"] < hi and three["r2"] is not None and "note" not in three
    import pandas as pd
    sweep = pd.DataFrame({"run": ["a", "b"], "blocks": [1, 2], "layers": [1, 1], "params": [5701, 40000],
                          "aFD_ED": [3.0, 2.0], "aFD_ES": [3.0, 2.0], "dice": [0.8, 0.85]})
    laws = scaling_laws(sweep)
    assert laws["afd"]["slope_ci90"] is None and "no interval" in laws["afd"]["note"]
    ys = {m: np.array([0.0, 1.0]) for m in laws}
    assert figures.scaling_laws(sweep, laws, ys, tmp_path / "s.png").stat().st_size > 1000


def test_one_fps_bin_is_a_note_not_a_plot():
    one = [{"bin": "50", "n": 7, "fps_mean": 50.0}]
    assert "all 7 clip(s) fall in one FPS bin (50 frames/s" in fps_bins_note(one)
    assert fps_bins_note(one * 2) is None
    metrics = {"dataset": "d", "split": "TEST", "n_clips": 7, "n_missing_predictions": 0, "predictions": "p",
               "thresholds": {"dice": 0.5, "afd": 0.5, "source": "default 0.5"},
               "analysis": {"afd_by_fps": [dict(one[0], aFD_ED=1.0, aFD_ES=1.0, ms_ED=20.0, ms_ES=20.0)],
                            "afd_by_fps_note": fps_bins_note(one)}}
    from pathlib import Path
    assert "Note: all 7 clip(s) fall in one FPS bin" in _markdown(metrics, [], [], Path("."))


def test_reproduce_warns_on_a_teacher_that_misses_the_traces(tmp_path):
    from tiny_echonet import pulsing_folder

    from echodfkd.data import open_dataset
    from echodfkd.io.atomic import save_npz
    from echodfkd.reproduce.sanity import DICE_FLOOR, warn_low_teacher_dice

    ds = open_dataset(pulsing_folder(tmp_path / "dyn", {"TEST": 3}, frames=10))
    good, bad = tmp_path / "good", tmp_path / "bad"
    for name in ds.names("TEST"):
        masks = np.zeros((10, 32, 32), np.uint8)
        for f in ds.traced_frames(name):
            masks[f] = ds.trace_mask(name, f, shape=(32, 32)) * 255
        save_npz(good / f"{name}.npz", masks=masks)
        save_npz(bad / f"{name}.npz", masks=np.zeros_like(masks))
    said: list[str] = []
    ok = warn_low_teacher_dice(ds, good, "TEST", said.append)
    assert ok["clips"] == 3 and ok["dice"] > 0.95 and not said
    low = warn_low_teacher_dice(ds, bad, "TEST", said.append)
    assert low["dice"] < DICE_FLOOR and len(said) == 1
    assert said[0].startswith("WARNING: the teacher's Dice") and "3 traced TEST clip(s)" in said[0]
    assert warn_low_teacher_dice(ds, tmp_path / "none", "TEST", said.append) is None and len(said) == 1
    json.dumps(ok)  # a plain record, ready for a summary


def test_sweep_report_of_two_runs_says_why_there_is_no_interval(tmp_path):
    from echodfkd.report.sweep import write_sweep_report

    for name, (b, p, s) in {"B1_l1": (1, 5701, 6.0), "B2_l1": (2, 40000, 4.0)}.items():
        (tmp_path / "sweep" / name).mkdir(parents=True)
        (tmp_path / "sweep" / name / "config.json").write_text(json.dumps({"blocks": b, "layers": 1, "params": p}))
        (tmp_path / "sweep" / name / "metrics.json").write_text(json.dumps(
            {"afd": {"full": {"aFD_ED": s / 2, "aFD_ES": s / 2, "aFD_sum": s}}}))
    res = write_sweep_report(tmp_path / "sweep", tmp_path / "out")
    assert res["scaling_laws"]["afd"]["r2"] is None
    text = (tmp_path / "out" / "report.md").read_text()
    assert "- -ln(aFD_ED + aFD_ES): slope through 2 runs only: no interval and no r² (needs 3 runs" in text
    assert "r² = 1.000" not in text and "| 1.000 |" not in text
