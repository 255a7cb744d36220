"""`echodfkd report SWEEP_DIR`: Tables 1-2 and scaling laws over a folder of evaluated runs."""

from __future__ import annotations

import argparse

from echodfkd.commands import _flags

NAME = "report"
HELP = "tables (Dice/meanIoU by B x l, params and aFD) and scaling-law fits over a sweep folder"
DESCRIPTION = (
    "SWEEP_DIR holds one folder per run with config.json (blocks, layers, params) and a metrics.json from "
    "`echodfkd evaluate`. Writes REPORT/report.md (Table 1, Table 2, fitted slopes with 90 % intervals, "
    "saturation point), sweep.json, sweep.csv and figures/scaling_laws.png."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="folder of run folders")
    _flags.add_out(parser, "report")
    _flags.add_json(parser, help="print the sweep's tables and fits (sweep.json) as JSON")


def run(args: argparse.Namespace) -> int:
    """Build the sweep report and print the fitted slopes."""
    from echodfkd.report.sweep import write_sweep_report

    _flags.check_writable_dir(args.out, keep=False)
    result = write_sweep_report(args.sweep_dir, args.out)
    if args.json:
        import json

        print(json.dumps(result, indent=2, default=str))
        return 0
    print(f"{len(result['runs'])} runs")
    for law in result["scaling_laws"].values():
        sat = law["saturation"]["params"]
        print(f"  {law['quantity']}: slope {law['slope']:.4f} per ln(params), saturation "
              f"{'not reached' if sat is None else f'at {sat:,.0f} params'}")
    print(f"report: {args.out}/report.md")
    return 0
