"""Shared test fixtures: paths to the optional real-data fixtures, quiet progress bars."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("ECHODFKD_QUIET", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture
def shared_fixtures() -> Path:
    """The real EchoNet FileList and A4C clip; skips when ../shared/fixtures is absent."""
    if not (SHARED_FIXTURES / "echonet_dynamic_FileList.csv").exists():
        pytest.skip("../shared/fixtures is absent (real EchoNet fixtures are optional)")
    return SHARED_FIXTURES


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module: its inputs are tiny, and on a shared 2-core machine OpenMP
    threads spinning against other processes make such tests several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
