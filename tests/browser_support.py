"""Headless Chromium for the browser tests: find it (or install Debian's with apt-get, when allowed and online),
launch it with Playwright, and read back what the page drew.

Installing is tried only as root with apt-get, only when the package source answers within a few seconds,
and never when ECHODFKD_NO_APT=1; otherwise the tests are skipped with the reason (CI offline stays green).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
APT_SOURCES = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]


def find_chromium() -> Path | None:
    """A Chromium/Chrome executable on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def apt_source_reachable(timeout: float = 3.0) -> bool:
    """True when the first Debian package source named in /etc/apt answers a TCP connection (i.e. online)."""
    for source in APT_SOURCES:
        try:
            text = source.read_text(errors="replace")
        except OSError:
            continue
        for url in re.findall(r"(?:^deb\s+(?:\[[^]]*\]\s+)?|^URIs:\s*)(\S+)", text, flags=re.M):
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                continue
            try:
                with socket.create_connection((parsed.hostname, parsed.port or (443 if parsed.scheme == "https"
                                                                                  else 80)), timeout=timeout):
                    return True
            except OSError:
                return False
    return False


def install_chromium() -> Path:
    """Install Debian's chromium with apt-get, or skip the calling test with the reason."""
    if os.environ.get("ECHODFKD_NO_APT") == "1":
        pytest.skip("no chromium on PATH, and ECHODFKD_NO_APT=1 forbids installing it")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no chromium on PATH, and it cannot be installed here (needs root and apt-get)")
    if not apt_source_reachable():
        pytest.skip("no chromium on PATH, and the package source is unreachable (offline): not installing")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    quick = ["-o", "Acquire::Retries=0", "-o", "Acquire::http::Timeout=20", "-o", "Acquire::https::Timeout=20"]
    try:
        for cmd in (["apt-get", *quick, "update", "-qq"], ["apt-get", *quick, "install", "-y", "-qq", "chromium"]):
            subprocess.run(cmd, check=True, capture_output=True, timeout=600, env=env)
    except (subprocess.SubprocessError, OSError) as exc:
        detail = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")[-300:]
        pytest.skip(f"could not install chromium with apt-get ({exc}; {detail})")
    found = find_chromium()
    if found is None:
        pytest.skip("apt-get installed chromium but no chromium executable is on PATH")
    return found


def launch(playwright, chromium: Path, profile: Path):
    """A headless Chromium context (1280x900, scale 1) with its own profile folder."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(chromium), headless=True, args=LAUNCH_ARGS,
        viewport={"width": 1280, "height": 900}, device_scale_factor=1)


def save_screenshot(page, tmp_path: Path, name: str) -> Path:
    """Full-page screenshot into the test's tmp folder (and $ECHODFKD_SCREENSHOT_DIR when set)."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("ECHODFKD_SCREENSHOT_DIR"):
        out = Path(os.environ["ECHODFKD_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / name)
    return shot


def painted_pixels(page, canvas_id: str) -> int:
    """How many pixels of a canvas are not transparent (the page really drew something)."""
    return page.evaluate("""(id) => {
        const c = document.getElementById(id);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n; }""", canvas_id)


def console_errors(page) -> list[str]:
    """A list that collects the page's console errors and uncaught exceptions as they happen."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


@contextmanager
def viewer_page(chromium: Path, base: str, profile: Path) -> Iterator[tuple]:
    """(page, console errors) of the viewer at `base`, loaded and with /api/info answered; closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = launch(p, chromium, profile)
        try:
            page = context.new_page()
            errors = console_errors(page)
            page.goto(base + "/")
            # (selectors, not wait_for_function: the page's CSP forbids the eval that one needs)
            page.wait_for_selector("#example option", state="attached")
            yield page, errors
        finally:
            context.close()


def upload(page, path: Path, timeout_ms: int = 45_000) -> str:
    """Upload `path` through the page's file input; the page's state once it settles ('ready' or 'error')."""
    page.set_input_files("#file", str(path))
    page.wait_for_selector("body[data-state='ready'], body[data-state='error']", timeout=timeout_ms)
    return page.get_attribute("body", "data-state")
