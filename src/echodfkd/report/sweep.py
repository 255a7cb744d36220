"""Sweep report: Table 1 (Dice/meanIoU by B × l), Table 2 (params, aFD), scaling-law fits and figure."""

from __future__ import annotations

import os
from pathlib import Path

from echodfkd.errors import DatasetError
from echodfkd.evaluate.scaling import load_sweep, scaling_laws, transformed
from echodfkd.io.atomic import save_json, save_text
from echodfkd.io.records import EvaluationMetrics, StudentConfig
from echodfkd.report import figures
from echodfkd.report.tables import fmt, fmt_params, markdown, table1, table2


def unevaluated(sweep_dir: Path) -> list[Path]:
    """Run folders of a sweep with a config.json but no metrics.json anywhere below them."""
    root = Path(sweep_dir)
    if not root.is_dir():
        return []
    return [run for run in sorted(p for p in root.iterdir() if p.is_dir())
            if (run / StudentConfig.FILE).is_file() and next(run.rglob(EvaluationMetrics.FILE), None) is None]


def write_sweep_report(sweep_dir: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Read every run of `sweep_dir`, fit the scaling laws and write sweep.json, sweep.csv, report.md, figures."""
    sweep_dir, out = Path(sweep_dir), Path(out)
    pending = unevaluated(sweep_dir)
    try:
        sweep = load_sweep(sweep_dir)
    except DatasetError:
        if pending:  # trained but not evaluated: name the missing step
            raise DatasetError(f"{sweep_dir}: {len(pending)} trained run(s) but none evaluated (no "
                               f"metrics.json, e.g. in {pending[0]}); run `echodfkd sweep --evaluate` with the "
                               f"sweep's flags, or `echodfkd predict` + `echodfkd evaluate --out RUN/evaluation` "
                               f"per run") from None
        raise
    laws = scaling_laws(sweep)
    ys = {m: transformed(sweep, m)[0] for m in laws}
    fig = figures.scaling_laws(sweep, laws, ys, out / "figures" / "scaling_laws.png")
    rows = [{"method": f"EchoDFKD ({r.blocks},{r.layers})", "params": r.params, "aFD_ED": r.get("aFD_ED"),
             "aFD_ES": r.get("aFD_ES"), "clean_aFD_ED": r.get("clean_aFD_ED"),
             "clean_aFD_ES": r.get("clean_aFD_ES"), "n": r.get("n_clips")} for _, r in sweep.iterrows()]
    fits = []
    for metric, law in laws.items():
        ci = law.get("slope_ci90")
        sat = law["saturation"]["params"]
        fits.append([law["quantity"], law["n"], fmt(law["slope"], 4),
                     f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "—", fmt(law.get("r2"), 3),
                     fmt(law.get("improvement_per_doubling"), 4), fmt_params(sat) if sat else "not reached"])
    text = "\n".join(line for line in [
        "# EchoDFKD sweep report", "", f"Sweep: `{sweep_dir}` ({len(sweep)} runs).", "",
        *([f"Left out, trained but not evaluated (no metrics.json): {', '.join(p.name for p in pending)}; "
           "`echodfkd sweep --evaluate` evaluates them.", ""] if pending else []),
        "## Table 1: Dice / meanIoU by blocks B and layers l", "", table1(sweep),
        "Per-video mean over the traced ED/ES frames (the paper's), from each run's metrics.json "
        "(falls back to ground truth, then teacher agreement, when a run has no tracings).", "",
        "## Table 2: parameters and aFD (frames)", "", table2(rows),
        "## Scaling laws", "",
        markdown(["Quantity", "Runs", "Slope per ln(params)", "90 % interval", "r²", "Improvement per doubling",
                  "Saturation point"], fits),
        "Slopes are least-squares fits against ln(params); improvement per doubling = slope·ln 2, signed so "
        "that positive is better; intervals are t-quantile × standard error "
        "(scipy.stats.linregress). Saturation point: the smallest model size beyond which the fitted gain per "
        "doubling of parameters falls below the runs' bootstrap 90 % half-width (see "
        "echodfkd.evaluate.scaling).", "",
        *[f"- {law['quantity']}: {law['note']}." for law in laws.values() if law.get("note")],
        "" if any(law.get("note") for law in laws.values()) else None,
        f"![scaling laws]({fig.relative_to(out).as_posix()})", ""] if line is not None)
    save_text(out / "sweep.csv", sweep.to_csv(index=False))
    result = {"sweep": str(sweep_dir), "runs": sweep.to_dict(orient="records"), "scaling_laws": laws,
              "unevaluated": [p.name for p in pending],
              "figures": [fig.relative_to(out).as_posix()]}
    save_json(out / "sweep.json", result)
    save_text(out / "report.md", text)
    return result
