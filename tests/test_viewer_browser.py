"""End-to-end test of the viewer in a real headless browser (Chromium driven by Playwright).

The server runs on loopback on a free port (conftest's `viewer_server`); the test uploads a beating clip
through the page's file input, waits for the result, checks the area curve and the ED/ES markers, and saves
a screenshot into the test's tmp folder (and into $ECHODFKD_SCREENSHOT_DIR when set). Chromium comes from
PATH, or apt-get when allowed and online (tests/browser_support.py); otherwise the test is skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the viewer extra is not installed (pip install 'echodfkd[viewer]')")
pytest.importorskip("uvicorn", reason="the viewer extra is not installed (pip install 'echodfkd[viewer]')")
pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

from browser_support import painted_pixels, save_screenshot, upload, viewer_page  # noqa: E402
from viewer_support import write_beating_avi  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def beating_avi(tmp_path) -> Path:
    """A 90-frame 112x112 clip with a dark beating cavity (4.5 beats) that the hand-set student outlines.

    (Not a phantom clip: the phantom's look is tuned for realism and may change; this test is about the page.)"""
    return write_beating_avi(tmp_path / "beating.avi", frames=90, size=112, fps=25.0)


def test_upload_in_browser_shows_curve_markers_beats_and_alert(chromium, viewer_server, beating_avi, tmp_path):
    base, app = viewer_server
    with viewer_page(chromium, base, tmp_path / "profile") as (page, errors):
        header = page.inner_text("#model-info")
        assert "demo/student" in header and "student student" not in header.lower(), header
        assert upload(page, beating_avi) == "ready", page.inner_text("#error")

        curve = page.locator("#curve")
        assert curve.is_visible() and curve.bounding_box()["width"] > 300
        assert painted_pixels(page, "curve") > 2000 and painted_pixels(page, "video-student") > 1000
        n_frames = int(curve.get_attribute("data-frames"))
        assert n_frames == 90
        ed = page.locator("#markers li[data-phase='ED']")
        es = page.locator("#markers li[data-phase='ES']")
        assert ed.count() >= 1 and es.count() >= 1
        assert curve.get_attribute("data-ed") and curve.get_attribute("data-es")
        # The beats table lists the chips' beats (one source): each row's ED/ES is a chip's frame.
        chips = {(m.get_attribute("data-phase"), int(m.get_attribute("data-frame")))
                 for m in page.locator("#markers li[data-phase]").all()}
        rows = page.locator("#beats tbody tr").all()
        assert rows and "No complete beat" not in page.inner_text("#beats-note")
        for row in rows:
            ed_frame, es_frame = (int(row.locator(f"button.{p}").inner_text()) for p in ("ED", "ES"))
            assert ("ED", ed_frame) in chips and ("ES", es_frame) in chips

        # Playback moves the cursor on the curve; clicking a marker pauses on its frame.
        first = curve.get_attribute("data-cursor")
        page.wait_for_selector(f"#curve:not([data-cursor='{first}'])", timeout=5_000)
        es.first.locator("button").click()
        assert curve.get_attribute("data-cursor") == es.first.get_attribute("data-frame")
        assert page.inner_text("#play") == "Play"

        assert page.inner_text("#alert").strip()
        assert page.inner_text("#ef").strip()
        assert "ms" in page.inner_text("#latency")
        shot = save_screenshot(page, tmp_path, "viewer_upload.png")
        assert shot.stat().st_size > 10_000
        assert not errors, errors

        # A non-video upload shows the server's message in the page.
        bad = tmp_path / "notes.avi"
        bad.write_text("these are notes, not a video\n" * 50)
        page.set_input_files("#file", str(bad))
        page.wait_for_selector("#error:not([hidden])", timeout=15_000)
        assert "not a video" in page.inner_text("#error")
        # ... and the previous clip's results are gone, not left on screen beside the error.
        assert page.locator("#result").is_hidden()
        assert page.locator("#markers li").count() == 0 and page.locator("#beats tbody tr").count() == 0
        assert page.inner_text("#ef") == "" and page.get_attribute("body", "data-state") == "error"

        # A 0-byte file: the server's own words, not "No file received".
        empty = tmp_path / "empty.avi"
        empty.write_bytes(b"")
        page.set_input_files("#file", str(empty))
        page.wait_for_selector("#error:not([hidden]):has-text('empty file')", timeout=15_000)
        assert page.inner_text("#error") == "empty.avi: empty file (0 bytes)"
    assert app.state.private.leftovers() == []
