"""Shared by the fault tests (test_faults, test_faults_disk, test_locks): the CLI in a subprocess, temp-file checks, a phantom."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from distill_data import make_dataset
from echodfkd.cli import main

ENV = dict(os.environ, ECHODFKD_QUIET="1", OMP_NUM_THREADS="1")
PHANTOM = ["--videos", "14", "--size", "96", "--seed", "4", "--workers", "1", "--corrupt", "0.2"]
DISTILL = ["--blocks", "1", "--frame-size", "32", "--seq-len", "8", "--batch-size", "3", "--lr", "5e-3",
           "--epochs", "5", "--clips-per-epoch", "18", "--lr-schedule", "cosine", "--seed", "3",
           "--accelerator", "cpu", "--patience", "50"]


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


def distill_reference(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Tiny clips with soft targets, and one uninterrupted reference run of the DISTILL settings."""
    root = tmp_path_factory.mktemp("distill_faults")
    data, targets = make_dataset(root, ["TRAIN"] * 6 + ["VAL"] * 2)
    ref = root / "reference"
    assert main(["distill", "--data", str(data), "--targets", str(targets), "--out", str(ref), *DISTILL]) == 0
    return data, targets, ref


def files_under(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes), but those whose name is in `skip`."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip}
