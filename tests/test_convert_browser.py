"""The viewer in a headless browser on a DICOM upload: the page shows the sector found in the source."""

from __future__ import annotations

import pytest

pytest.importorskip("pydicom")
pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

from browser_support import save_screenshot, upload, viewer_page  # noqa: E402
from test_convert import _scanner_cine  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_dicom_upload_shows_the_sector(chromium, viewer_server, tmp_path):
    base, _ = viewer_server
    src = _scanner_cine(tmp_path)
    with viewer_page(chromium, base, tmp_path / "profile") as (page, errors):
        assert upload(page, src) == "ready", page.inner_text("#error")
        img = page.locator("#sector-preview")
        assert img.is_visible()
        assert page.evaluate("() => document.getElementById('sector-preview').naturalWidth") == 300
        assert "sector found in the 300×260 source" in page.inner_text("#clip-info")
        assert save_screenshot(page, tmp_path, "viewer_dicom.png").stat().st_size > 10_000
        assert not errors, errors
