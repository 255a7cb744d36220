"""`echodfkd noise ROUND1 ROUND2`: what two annotation rounds say about the best any model can score."""

from __future__ import annotations

import argparse

from echodfkd.commands import _flags

NAME = "noise"
HELP = "annotator-noise bounds from two annotation rounds: RMSE floor, correlation ceiling, frame-label fit"
DESCRIPTION = (
    "ROUND1 and ROUND2 are CSV files with one row per clip: a key column FileName (or id) and one column "
    "per quantity, e.g. FileName,ED,ES (frame labels) or FileName,EF. Rows are matched by key; every "
    "numeric column in both files is compared (or those of --columns). For each: RMSE(Z1, Z2) and the "
    "RMSE floor RMSE/√2 (the best RMSE a model can reach against one round), Pearson ρ and the correlation "
    "ceiling √ρ (supplement §2). Integer columns (frame labels) also get the Laplace+uniform fit of the "
    "differences (one annotator's E|X| and the give-up weight), from 30 differences up. "
    "--out DIR writes noise.json, noise.md and figures/differences_<column>.png."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    parser.add_argument("round1", metavar="ROUND1", help="first annotation round (CSV: FileName,<columns>)")
    parser.add_argument("round2", metavar="ROUND2", help="second annotation round, same columns")
    parser.add_argument("--columns", default=None, metavar="A,B",
                        help="compare only these columns (default: every numeric column in both rounds)")
    _flags.add_out(parser, "report", required=False, note="noise.json, noise.md, figures/")
    _flags.add_json(parser)


def run(args: argparse.Namespace) -> int:
    """Compare the rounds, print the table (or JSON), write --out."""
    import json
    from pathlib import Path

    from echodfkd.evaluate.rounds import compare_rounds, differences, read_round
    from echodfkd.io.atomic import save_json, save_text

    if args.out:
        _flags.check_writable_dir(args.out, keep=False)  # before any work
    r1, r2 = read_round(args.round1), read_round(args.round2)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    result = compare_rounds(r1, r2, columns, names=(args.round1, args.round2))
    result["rounds"] = [str(args.round1), str(args.round2)]
    if args.out:
        from echodfkd.report.noise import difference_figure, noise_markdown

        out = _flags.check_writable_dir(args.out)
        figs = []
        for col, q in result["quantities"].items():
            if "fit" in q:
                name = "".join(c if c.isalnum() or c in "-_" else "_" for c in col)
                figs.append(difference_figure(col, differences(r1, r2, col), q["fit"],
                                              out / "figures" / f"differences_{name}.png"))
        result["figures"] = [p.relative_to(out).as_posix() for p in figs]
        text = noise_markdown(result, (str(args.round1), str(args.round2)))
        text += "".join(f"\n![{p.stem}]({p.relative_to(out).as_posix()})\n" for p in figs)
        save_json(Path(out) / "noise.json", result)
        save_text(Path(out) / "noise.md", text)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['clips_matched']} clip(s) in both rounds ({result['only_in_round1']} only in ROUND1, "
          f"{result['only_in_round2']} only in ROUND2)")
    for col, q in result["quantities"].items():
        if "left_out" in q:
            print(f"  {col}: left out ({q['left_out']})")
            continue
        rho = "n/a (constant)" if q["rho"] is None else f"{q['rho']:.3f} -> ceiling {q['correlation_ceiling']:.3f}"
        print(f"  {col} ({q['n']} clips): RMSE {q['rmse']:.3f} -> floor {q['rmse_floor']:.3f}; rho {rho}")
        fit = q.get("fit")
        if fit and "left_out" in fit:
            print(f"    Laplace+uniform fit: left out ({fit['left_out']})")
        elif fit:
            print(f"    Laplace+uniform fit: one annotator's E|X| = {fit['b']:.2f} frames, give-up weight "
                  f"{fit['w']:.3f}, centre {fit['mu']:+.2f}")
    if args.out:
        print(f"wrote {Path(args.out) / 'noise.md'}")
    return 0
