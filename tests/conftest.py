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


@pytest.fixture(scope="session")
def chromium() -> Path:
    """A headless-capable Chromium for the browser tests (installed with apt-get only when allowed; else skip)."""
    from browser_support import find_chromium, install_chromium

    return find_chromium() or install_chromium()


@pytest.fixture
def viewer_server(tmp_path):
    """The viewer on 127.0.0.1:<free port> in a background thread, on a hand-set student in a folder named
    'student' (as the demo's); yields (base URL, app)."""
    import socket
    import threading
    import time

    uvicorn = pytest.importorskip("uvicorn", reason="the viewer extra is not installed")
    from viewer_support import dark_cavity_student

    from echodfkd.viewer import create_app

    app = create_app(dark_cavity_student(tmp_path / "demo" / "student"), examples_cache=tmp_path / "cache")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no race for the port
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the viewer server did not start on loopback")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()
