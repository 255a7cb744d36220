"""The one cache folder ($ECHODFKD_CACHE) and the deprecated $ECHODFKD_CACHE_DIR fallback."""

from __future__ import annotations

from echodfkd.evaluate.echoclip.embed import default_cache_dir
from echodfkd.io import cache


def test_every_cache_is_a_subfolder_of_one_root(tmp_path, monkeypatch):
    monkeypatch.setenv("ECHODFKD_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("ECHODFKD_CACHE_DIR", raising=False)
    assert cache.cache_folder("compiled") == tmp_path / "c" / "compiled"
    assert default_cache_dir() == tmp_path / "c" / "echoclip"
    monkeypatch.delenv("ECHODFKD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "xdg" / "echodfkd"


def test_old_variable_still_names_the_compiled_folder_with_one_note(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ECHODFKD_CACHE", raising=False)
    monkeypatch.setenv("ECHODFKD_CACHE_DIR", str(tmp_path / "old"))
    monkeypatch.setattr(cache, "_warned", set())
    assert cache.cache_folder("compiled") == cache.cache_folder("compiled") == tmp_path / "old"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ECHODFKD_CACHE_DIR is deprecated" in err[0]
    assert cache.cache_folder("echoclip") != tmp_path / "old"  # it only ever meant the engine folder
    monkeypatch.setenv("ECHODFKD_CACHE", str(tmp_path / "new"))  # the new variable wins
    assert cache.cache_folder("compiled") == tmp_path / "new" / "compiled"
