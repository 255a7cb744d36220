"""Shared by the fault tests (test_faults, test_locks): the CLI in a subprocess, temp-file checks, a phantom."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from echodfkd.cli import main

ENV = dict(os.environ, ECHODFKD_QUIET="1", OMP_NUM_THREADS="1")
PHANTOM = ["--videos", "14", "--size", "96", "--seed", "4", "--workers", "1", "--corrupt", "0.2"]


def cli(*args: str) -> list[str]:
    """The echodfkd command line as a subprocess argv."""
    return [sys.executable, "-m", "echodfkd", *map(str, args)]


def temp_files(root: Path) -> list[Path]:
    """Half-written temporary files left under `root`."""
    return [p for p in root.rglob("*") if ".tmp" in p.name]


def phantom_folder(tmp_path_factory) -> Path:
    """A small phantom dataset (PHANTOM settings) in a fresh temporary folder."""
    out = tmp_path_factory.mktemp("phantom_ref") / "ph"
    assert main(["phantom", "--out", str(out), *PHANTOM]) == 0
    return out
