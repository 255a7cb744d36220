"""Analyses with known answers: FPS bins, error concentration, EF, annotator noise, scaling laws."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from echodfkd.errors import DatasetError, SignalError
from echodfkd.evaluate.analysis import (afd_by_fps, annotator_noise_bounds, correlation_ceiling, ef_agreement,
                                        ef_area_length, ef_area_ratio, error_concentration, fit_laplace_uniform,
                                        long_axis, rmse_floor)
from echodfkd.evaluate.scaling import fit_loglog, load_sweep, saturation_point, scaling_laws


def test_afd_by_fps_bins_and_counts():
    per = pd.DataFrame({"ED": [1, 3, 2, 2, 2, 10], "ES": [0, 0, 1, 1, 4, 6],
                        "FPS": [25, 25, 50, 50, 50, 120]})
    t = afd_by_fps(per).set_index("bin")
    assert t.index.tolist() == ["<30", "50", ">=100"]
    assert t["n"].tolist() == [2, 3, 1]
    assert t.loc["<30", "aFD_ED"] == 2 and t.loc["50", "aFD_ES"] == 2
    assert t.loc["<30", "ms_ED"] == pytest.approx(1000 * 2 / 25)
    assert t.loc[">=100", "sem_ED"] == 0.0


def test_error_concentration():
    c = error_concentration([3, 1, 0, 0])          # squared: 9, 1, 0, 0
    assert c["share_error"].tolist() == pytest.approx([0, 0.9, 1, 1, 1])
    assert c["frac_50"] == 0.25 and c["frac_80"] == 0.25
    even = error_concentration([1, 1, 1, 1])
    assert even["frac_50"] == 0.5 and even["frac_80"] == 1.0
    assert error_concentration([0, 0])["frac_50"] == 0.0
    with pytest.raises(SignalError):
        error_concentration([1, np.nan])


def test_ef_estimates():
    assert ef_area_ratio([100.0, 0.0], [60.0, 5.0])[0] == pytest.approx(40.0)
    assert np.isnan(ef_area_ratio([0.0], [5.0])[0])
    # equal lengths: V ~ A², so EF = 100·(1 − 0.6²) = 64
    assert ef_area_length([100.0], [10.0], [60.0], [10.0])[0] == pytest.approx(64.0)
    # shorter ES long axis raises the ES volume: V_ES = 8·3600/(3π·8)
    v_ed, v_es = 8 * 100 ** 2 / (3 * math.pi * 10), 8 * 60 ** 2 / (3 * math.pi * 8)
    assert ef_area_length([100.0], [10.0], [60.0], [8.0])[0] == pytest.approx(100 * (v_ed - v_es) / v_ed)
    bar = np.zeros((30, 30), bool)
    bar[5, 3:24] = True
    assert long_axis(bar) == pytest.approx(21.0) and long_axis(np.zeros((4, 4), bool)) == 0.0
    agree = ef_agreement([52, 62, 42, np.nan], [50, 60, 40, 55])
    assert agree["pearson_r"] == pytest.approx(1.0) and agree["mae"] == 2.0 and agree["bias"] == 2.0
    assert agree["n"] == 3 and agree["n_invalid"] == 1


def test_annotator_noise_bounds_match_the_camus_figures():
    assert round(rmse_floor(5.7), 2) == 4.03
    assert round(correlation_ceiling(0.801), 3) == 0.895
    rng = np.random.default_rng(0)
    y = rng.normal(55, 10, 20000)
    z1, z2 = y + rng.normal(0, 3, y.size), y + rng.normal(0, 3, y.size)
    b = annotator_noise_bounds(z1, z2)
    assert b["rmse"] == pytest.approx(3 * math.sqrt(2), rel=0.03)
    assert b["rmse_floor"] == pytest.approx(3.0, rel=0.03)
    # best correlation with one round is corr(Y, Z) = 10/sqrt(109)
    assert b["correlation_ceiling"] == pytest.approx(10 / math.sqrt(109), abs=0.005)
    with pytest.raises(SignalError):
        correlation_ceiling(1.5)


def test_laplace_uniform_fit_recovers_known_parameters():
    rng = np.random.default_rng(1)
    n = 4000
    give_up = rng.random(n) < 0.05
    d = np.where(give_up, rng.uniform(-40, 40, n), rng.laplace(1.0, 2.0, n))
    fit = fit_laplace_uniform(d, support=(-40, 40))
    assert fit["b"] == pytest.approx(2.0, rel=0.08)
    assert fit["w"] == pytest.approx(0.05, abs=0.015)
    assert fit["mu"] == pytest.approx(1.0, abs=0.15)
    no_mu = fit_laplace_uniform(d, support=(-40, 40), fit_mu=False)
    assert no_mu["mu"] == 0.0 and no_mu["loglik"] < fit["loglik"]
    with pytest.raises(SignalError, match="support"):
        fit_laplace_uniform(d, support=(-5, 5))


def test_scaling_fit_recovers_a_known_slope():
    rng = np.random.default_rng(2)
    params = np.array([5701, 12000, 30000, 80000, 200000, 714577, 2e6])
    y = 0.3 - 0.12 * np.log(params) + rng.normal(0, 0.01, params.size)
    fit = fit_loglog(params, y)
    assert fit["slope"] == pytest.approx(-0.12, abs=0.01)
    lo, hi = fit["slope_ci90"]
    assert lo < -0.12 < hi and hi - lo < 0.03
    assert fit["gain_per_doubling"] == pytest.approx(fit["slope"] * math.log(2))
    exact = fit_loglog([10, 100], [1.0, 2.0])
    assert exact["slope"] == pytest.approx(1 / math.log(10)) and exact["slope_ci90"] is None


def test_saturation_point_is_where_gains_fall_below_noise():
    params = np.array([1e4, 2e4, 4e4, 8e4, 1.6e5, 3.2e5, 6.4e5])
    # gains 0.1 per doubling up to 8e4, then flat: the tail from 8e4 on gains 0 < noise 0.02
    y = np.minimum(np.log2(params / 1e4), 3.0) * 0.1
    sat = saturation_point(params, y, np.full(params.size, 0.02), better="higher")
    assert sat["params"] == 8e4 and sat["noise_source"] == "bootstrap"
    assert saturation_point(params, np.log2(params) * 0.1, np.full(params.size, 0.02))["params"] is None
    # lower-is-better metrics flip the sign of the gain
    assert saturation_point(params, -y, np.full(params.size, 0.02), better="lower")["params"] == 8e4


def _run(root, name, blocks, layers, params, afd_sum, dice):
    run = root / name
    (run / "report").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"blocks": blocks, "layers": layers, "params": params}))
    metrics = {"afd": {"full": {"aFD_ED": afd_sum / 2, "aFD_ES": afd_sum / 2, "aFD_sum": afd_sum,
                                "aFD_sum_ci90": [afd_sum * 0.99, afd_sum * 1.01]}},
               "segmentation": {"vs_tracings": {"overall": {
                   "dice_per_video_mean": dice, "dice_per_video_mean_ci90": [dice - 1e-4, dice + 1e-4],
                   "iou_per_video_mean": dice / (2 - dice), "iou_per_video_mean_ci90": None}}}}
    (run / "report" / "metrics.json").write_text(json.dumps(metrics))


def test_sweep_folder_scaling_laws(tmp_path):
    sizes = {(1, 1): 5701, (2, 1): 40000, (3, 1): 180000, (4, 1): 714577}
    for (b, l), p in sizes.items():
        # aFD_sum = 20·p^-0.25 -> −ln(aFD_sum) has slope 0.25; 1 − Dice = 2·p^-0.2 -> slope −0.2
        _run(tmp_path, f"B{b}_l{l}", b, l, p, 20 * p ** -0.25, 1 - 2 * p ** -0.2)
    (tmp_path / "not_a_run").mkdir()
    sweep = load_sweep(tmp_path)
    assert sweep["run"].tolist() == ["B1_l1", "B2_l1", "B3_l1", "B4_l1"]
    laws = scaling_laws(sweep)
    assert laws["afd"]["slope"] == pytest.approx(0.25)
    assert laws["dice"]["slope"] == pytest.approx(-0.2)
    assert laws["iou"]["slope"] < 0
    assert laws["afd"]["saturation"]["params"] is None       # exact power laws never saturate
    with pytest.raises(DatasetError, match="no run folder"):
        load_sweep(tmp_path / "not_a_run")
