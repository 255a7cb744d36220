"""End-to-end test of the viewer in a real headless browser (Debian's chromium driven by Playwright).

The server runs on loopback on a free port; the test uploads a phantom clip through the page's file
input, waits for the result, checks the area curve and the ED/ES markers, and saves a screenshot into
the test's tmp folder (and into $ECHODFKD_SCREENSHOT_DIR when set). Chromium is installed with apt-get
when missing and the tests run as root; otherwise the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the viewer extra is not installed (pip install 'echodfkd[viewer]')")
pytest.importorskip("uvicorn", reason="the viewer extra is not installed (pip install 'echodfkd[viewer]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

from viewer_support import dark_cavity_student  # noqa: E402

from echodfkd.viewer import create_app  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get once per session when missing (root only)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            subprocess.run(cmd, check=True, capture_output=True, timeout=900, env=env)
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"could not install chromium with apt-get ({exc}; {detail.decode(errors='replace')[-300:]})")
    if not CHROMIUM.exists():
        pytest.skip(f"apt-get installed chromium but {CHROMIUM} is absent")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """The viewer on 127.0.0.1:<free port> in a background thread; yields (base URL, app)."""
    import uvicorn

    app = create_app(dark_cavity_student(tmp_path / "run"), examples_cache=tmp_path / "cache")
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the viewer server did not start on loopback")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def phantom_clip(tmp_path) -> Path:
    """One short phantom A4C clip (generated, ~2 beats)."""
    from echodfkd.data.phantom import generate_phantom

    root = generate_phantom(tmp_path / "phantom", videos=1, style="dynamic", seed=3, size=112, workers=1,
                            frames=90)
    return next((root / "Videos").glob("*.avi"))


def _browser(playwright, chromium: Path, profile: Path):
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(chromium), headless=True, args=LAUNCH_ARGS,
        viewport={"width": 1280, "height": 900}, device_scale_factor=1)


def _save_screenshot(page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("ECHODFKD_SCREENSHOT_DIR"):
        out = Path(os.environ["ECHODFKD_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / name)
    return shot


def _painted_pixels(page, canvas_id: str) -> int:
    """How many pixels of a canvas are not transparent (the page really drew something)."""
    return page.evaluate("""(id) => {
        const c = document.getElementById(id);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n; }""", canvas_id)


def test_upload_phantom_in_browser_shows_curve_markers_and_alert(chromium, server, phantom_clip, tmp_path):
    base, app = server
    with sync_api.sync_playwright() as p:
        context = _browser(p, chromium, tmp_path / "profile")
        try:
            page = context.new_page()
            console_errors = []
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.goto(base + "/")
            # (selectors, not wait_for_function: the page's CSP forbids the eval that one needs)
            page.wait_for_selector("#example option", state="attached")  # /api/info answered
            page.set_input_files("#file", str(phantom_clip))
            page.wait_for_selector("body[data-state='ready'], body[data-state='error']", timeout=45_000)
            assert page.get_attribute("body", "data-state") == "ready", page.inner_text("#error")

            curve = page.locator("#curve")
            assert curve.is_visible() and curve.bounding_box()["width"] > 300
            assert _painted_pixels(page, "curve") > 2000 and _painted_pixels(page, "video-student") > 1000
            n_frames = int(curve.get_attribute("data-frames"))
            assert n_frames == 90
            ed = page.locator("#markers li[data-phase='ED']")
            es = page.locator("#markers li[data-phase='ES']")
            assert ed.count() >= 1 and es.count() >= 1
            assert curve.get_attribute("data-ed") and curve.get_attribute("data-es")

            # Playback moves the cursor on the curve; clicking a marker pauses on its frame.
            first = curve.get_attribute("data-cursor")
            page.wait_for_selector(f"#curve:not([data-cursor='{first}'])", timeout=5_000)
            es.first.locator("button").click()
            assert curve.get_attribute("data-cursor") == es.first.get_attribute("data-frame")
            assert page.inner_text("#play") == "Play"

            assert page.inner_text("#alert").strip()
            assert page.inner_text("#ef").strip()
            assert "ms" in page.inner_text("#latency")
            shot = _save_screenshot(page, tmp_path, "viewer_phantom.png")
            assert shot.stat().st_size > 10_000
            assert not console_errors, console_errors

            # A non-video upload shows the server's message in the page.
            bad = tmp_path / "notes.avi"
            bad.write_text("these are notes, not a video\n" * 50)
            page.set_input_files("#file", str(bad))
            page.wait_for_selector("#error:not([hidden])", timeout=15_000)
            assert "not a video" in page.inner_text("#error")
        finally:
            context.close()
    assert app.state.private.leftovers() == []
