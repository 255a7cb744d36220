"""The README's test command: .ci/run runs it verbatim, it splits fast/slow, and pytest's exit 5 is no failure."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTEST = ".venv/bin/python -m pytest"


def readme_test_command() -> str:
    """The one shell line of the README's 'run the whole test suite' block."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"run the whole test suite.*?```bash\n(.*?)\n```", text, flags=re.S)
    assert block, "README: the test-suite command block is missing"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_ci_runs_the_readme_command_verbatim_fast_then_slow():
    command = readme_test_command()
    assert command in (REPO / ".ci" / "run").read_text()
    fast, slow = command.index('-m "not slow"'), command.index("-m slow")
    assert fast < slow  # the fast suite first


def _run_with_fake_pytest(tmp_path: Path, codes: tuple[int, int]) -> tuple[int, list[str]]:
    """Run the README line with venv/pip stubbed and pytest replaced by a script exiting with `codes`."""
    log = tmp_path / "calls.txt"
    fake = tmp_path / "fake_pytest.sh"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\nn=$(wc -l < {log})\n'
                    f'[ "$n" -eq 1 ] && exit {codes[0]}\nexit {codes[1]}\n')
    fake.chmod(0o755)
    line = readme_test_command()
    line = line.replace("python3 -m venv .venv", "true").replace(".venv/bin/pip install -e '.[test]'", "true")
    line = line.replace(PYTEST, str(fake))
    assert str(fake) in line and PYTEST not in line
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + line], capture_output=True, text=True, timeout=30)
    return proc.returncode, log.read_text().splitlines() if log.exists() else []


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_exit_5_is_a_pass_and_real_failures_still_fail(tmp_path):
    for codes, ok, calls in (((0, 0), True, 2), ((0, 5), True, 2), ((5, 0), True, 2),
                             ((1, 0), False, 1), ((0, 1), False, 2), ((2, 5), False, 1)):
        (tmp_path / "calls.txt").unlink(missing_ok=True)
        rc, seen = _run_with_fake_pytest(tmp_path, codes)
        assert (rc == 0) is ok and len(seen) == calls, (codes, rc, seen)
        assert "not slow" in seen[0]


def test_chromium_install_is_skipped_offline_or_when_forbidden(monkeypatch):
    import browser_support

    monkeypatch.setattr(browser_support.subprocess, "run",
                        lambda *a, **k: pytest.fail(f"apt-get was run: {a}"))
    monkeypatch.setenv("ECHODFKD_NO_APT", "1")
    with pytest.raises(pytest.skip.Exception, match="ECHODFKD_NO_APT"):
        browser_support.install_chromium()
    monkeypatch.delenv("ECHODFKD_NO_APT")
    monkeypatch.setattr(browser_support.os, "geteuid", lambda: 0)
    monkeypatch.setattr(browser_support.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(browser_support, "apt_source_reachable", lambda timeout=3.0: False)
    with pytest.raises(pytest.skip.Exception, match="offline"):
        browser_support.install_chromium()


def test_apt_source_probe_reads_both_source_formats(tmp_path, monkeypatch):
    import browser_support

    (tmp_path / "a.list").write_text("# comment\ndeb [arch=amd64] http://127.0.0.1:9/debian bookworm main\n")
    (tmp_path / "b.sources").write_text("Types: deb\nURIs: http://127.0.0.1:9/debian\n")
    tried = []

    def connect(address, timeout):
        tried.append(address)
        raise OSError("refused")

    monkeypatch.setattr(browser_support.socket, "create_connection", connect)
    for name in ("a.list", "b.sources"):
        tried.clear()
        monkeypatch.setattr(browser_support, "APT_SOURCES", [tmp_path / name])
        assert browser_support.apt_source_reachable() is False and tried == [("127.0.0.1", 9)]
