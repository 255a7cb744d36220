"""The viewer in a headless browser on a DICOM upload: the page shows the sector found in the source."""

from __future__ import annotations

import pytest

pytest.importorskip("pydicom")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

from browser_support import console_errors, launch, save_screenshot  # noqa: E402
from test_convert import _scanner_cine  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_dicom_upload_shows_the_sector(chromium, viewer_server, tmp_path):
    base, _ = viewer_server
    src = _scanner_cine(tmp_path)
    with sync_api.sync_playwright() as p:
        context = launch(p, chromium, tmp_path / "profile")
        try:
            page = context.new_page()
            errors = console_errors(page)
            page.goto(base + "/")
            page.wait_for_selector("#example option", state="attached")
            page.set_input_files("#file", str(src))
            page.wait_for_selector("body[data-state='ready'], body[data-state='error']", timeout=45_000)
            assert page.get_attribute("body", "data-state") == "ready", page.inner_text("#error")
            img = page.locator("#sector-preview")
            assert img.is_visible()
            assert page.evaluate("() => document.getElementById('sector-preview').naturalWidth") == 300
            assert "sector found in the 300×260 source" in page.inner_text("#clip-info")
            assert save_screenshot(page, tmp_path, "viewer_dicom.png").stat().st_size > 10_000
            assert not errors, errors
        finally:
            context.close()
