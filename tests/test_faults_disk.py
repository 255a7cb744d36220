"""Faults: a full disk gives one line, leaves nothing half-written, and the rerun finishes once space is free.

The tests mount a small tmpfs (root only; skipped elsewhere), or make the writer raise ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from fault_support import DISTILL, PHANTOM, distill_reference, files_under, phantom_folder
from fault_support import temp_files as _temp_files
from echodfkd.cli import main
from tiny_models import npz_arrays

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def phantom_ref(tmp_path_factory) -> Path:
    return phantom_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def distill_inputs(tmp_path_factory) -> tuple[Path, Path, Path]:
    return distill_reference(tmp_path_factory)


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs mounted at tmp_path/disk, resized with the returned function; skips without mount rights."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")

    def resize(kib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={kib}k", str(disk)], check=True, capture_output=True)

    yield disk, resize
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _kib(root: Path) -> int:
    """KiB the files under `root` take on a tmpfs (whole 4 KiB pages)."""
    return sum(-(-p.stat().st_size // 4096) * 4 for p in root.rglob("*") if p.is_file())


def _full_then_free(run: Callable[[], int], out: Path, ref: Path, resize: Callable[[int], None],
                    capsys) -> None:
    """Run on a disk half the output's size: one line, nothing half-written; then grow it and finish."""
    resize(max(16, _kib(ref) // 2))
    capsys.readouterr()
    assert run() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on device" in err[0] and str(out) in err[0], err
    assert not _temp_files(out)
    resize(4 * _kib(ref) + 1024)
    assert run() == 0


def test_full_disk_phantom(small_disk, phantom_ref, capsys):
    disk, resize = small_disk
    out = disk / "ph"
    _full_then_free(lambda: main(["phantom", "--out", str(out), *PHANTOM]), out, phantom_ref, resize, capsys)
    assert files_under(out) == files_under(phantom_ref)


def test_full_disk_distill(small_disk, distill_inputs, capsys):
    from safetensors.torch import load_file

    disk, resize = small_disk
    data, targets, ref = distill_inputs
    out = disk / "run"
    args = ["distill", "--data", str(data), "--targets", str(targets), "--out", str(out), *DISTILL]
    # as a user would: a fresh run first, then --resume (refused where there is no run yet)
    _full_then_free(lambda: main(args + ["--resume"] * (out / "config.json").is_file()), out, ref, resize, capsys)
    got, want = (json.loads((r / "config.json").read_text())["training"] for r in (out, ref))
    assert got["epochs_trained"] == want["epochs_trained"]
    torch.testing.assert_close(got["best_val_loss"], want["best_val_loss"])
    a, b = load_file(out / "model.safetensors"), load_file(ref / "model.safetensors")
    for key in b:
        torch.testing.assert_close(a[key], b[key])


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    from echodfkd.teacher.model import Teacher, build_segmenter, save_echonet_checkpoint

    torch.manual_seed(0)
    arch = "lraspp_mobilenet_v3_large"
    return save_echonet_checkpoint(Teacher(build_segmenter(arch), arch=arch).eval(),
                                   tmp_path_factory.mktemp("teacher") / "teacher.pt")


def test_full_disk_label(small_disk, phantom_ref, teacher_ckpt, tmp_path, capsys):
    disk, resize = small_disk
    args = [str(phantom_ref), "--teacher", str(teacher_ckpt), "--batch-size", "16", "--split", "VAL,TEST"]
    assert main(["label", *args, "--out", str(tmp_path / "ref")]) == 0
    out = disk / "targets"
    _full_then_free(lambda: main(["label", *args, "--out", str(out)]), out, tmp_path / "ref", resize, capsys)
    got, want = npz_arrays(out), npz_arrays(tmp_path / "ref")
    assert got.keys() == want.keys() and len(got) == 4
    for name in want:
        for key in want[name]:
            np.testing.assert_array_equal(got[name][key], want[name][key])


def _student(run: Path) -> Path:
    from echodfkd.models import Student

    torch.manual_seed(0)
    Student(blocks=2).eval().save_pretrained(run, extra_config={"thresholds": {"dice": 0.4, "afd": 0.3},
                                                                "infer_size": 96})
    return run


def test_full_disk_predict(small_disk, phantom_ref, tmp_path, capsys):
    disk, resize = small_disk
    model = _student(tmp_path / "model")
    args = [str(phantom_ref), "--student", str(model), "--split", "VAL,TEST"]
    ref = tmp_path / "ref"
    assert main(["predict", *args, "--out", str(ref)]) == 0
    out = disk / "pred"
    _full_then_free(lambda: main(["predict", *args, "--out", str(out)]), out, ref, resize, capsys)
    assert npz_arrays(out).keys() == npz_arrays(ref).keys()
    for name, arrays in npz_arrays(ref).items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(npz_arrays(out)[name][key], value)


def test_enospc_from_any_writer_is_one_line_and_leaves_no_temp_file(phantom_ref, teacher_ckpt, tmp_path,
                                                                    monkeypatch, capsys):
    """Where no tmpfs can be mounted: the third target write fails as a full disk would."""
    import echodfkd.io.atomic as atomic

    real, calls = atomic.np.savez_compressed, []

    def savez(fh, **arrays):
        calls.append(1)
        if len(calls) == 3:
            fh.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fh, **arrays)

    monkeypatch.setattr(atomic.np, "savez_compressed", savez)
    out = tmp_path / "targets"
    args = ["label", str(phantom_ref), "--teacher", str(teacher_ckpt), "--out", str(out), "--batch-size", "16",
            "--split", "VAL,TEST"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on device" in err[0] and str(out) in err[0]
    kept = sorted(out.glob("*.npz"))
    assert not _temp_files(out) and 2 <= len(kept) < 4
    for path in kept:  # the writes before the failure (and any already in flight) are whole
        with np.load(path) as z:
            assert z["masks"].ndim == 3
    assert main(args) == 0 and len(list(out.glob("*.npz"))) == 4
