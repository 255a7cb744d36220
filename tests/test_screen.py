"""`echodfkd echoclip --screen`: rank clips by prompts on raw frames, from the evaluation's embedding cache.

A tiny random open_clip model is registered and built at test time (as in test_echoclip.py): its ranking
means nothing clinically, so the tests check the arithmetic, the cache reuse, the outputs and the merge.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from echodfkd.cli import main  # noqa: E402
from echodfkd.data.check import read_corrupted  # noqa: E402
from echodfkd.evaluate.echoclip.model import load_clip_model  # noqa: E402
from echodfkd.evaluate.echoclip.screen import SCREEN_PROMPTS, prompt_name, screen_prompts  # noqa: E402
from echodfkd.io.video import write_video  # noqa: E402
from tiny_models import register_tiny_clip  # noqa: E402

TINY_NAME = "echodfkd-screen-tiny"
FRAMES, SIZE = 8, 64


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_clip")
    register_tiny_clip(root, TINY_NAME)
    torch.manual_seed(1)
    ckpt = root / "tiny.pt"
    torch.save(open_clip.create_model(TINY_NAME).state_dict(), ckpt)
    return ckpt


@pytest.fixture
def data(tmp_path) -> tuple[Path, Path]:
    """Six clips of different brightness and texture (TRAIN and TEST), one unreadable; masks for five."""
    root, pred = tmp_path / "data", tmp_path / "pred"
    (root / "Videos").mkdir(parents=True)
    pred.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    names, splits = [f"clip{k}" for k in range(6)], ["TRAIN", "TRAIN", "TEST", "TEST", "TEST", "TEST"]
    for k, name in enumerate(names):
        lv = np.stack([((yy - 32) / (14 + 2 * np.cos(t))) ** 2 + ((xx - 32) / 9) ** 2 <= 1 for t in range(FRAMES)])
        video = np.where(lv, 10, 40 + 35 * k).astype(np.uint8) + rng.integers(0, 20 + 20 * k, lv.shape).astype(np.uint8)
        write_video(root / "Videos" / f"{name}.avi", video, fps=50)
        np.savez(pred / f"{name}.npz", masks=(lv * 255).astype(np.uint8))
    (root / "Videos" / "clip5.avi").write_bytes(b"not a video")
    (pred / "clip5.npz").unlink()
    pd.DataFrame({"FileName": names, "EF": 60.0, "Split": splits}).to_csv(root / "FileList.csv", index=False)
    return root, pred


def _screen(data_dir: Path, ckpt: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    return ["echoclip", "--screen", "--data", str(data_dir), "--echoclip", str(ckpt), "--cache", str(cache),
            "--out", str(out), "--batch-size", "4", *extra]


def test_screen_ranks_clips_from_the_evaluation_cache(tiny_ckpt, data, tmp_path, capsys):
    root, pred = data
    cache = tmp_path / "cache"
    # The EchoCLIP evaluation of the first two TEST clips fills the raw-frame cache for them.
    assert main(["echoclip", "--data", str(root), "--predictions", str(pred), "--echoclip", str(tiny_ckpt),
                 "--cache", str(cache), "--out", str(tmp_path / "eval"), "--max-clips", "2", "--figures", "0"]) == 0
    out = tmp_path / "screen"
    argv = _screen(root, tiny_ckpt, cache, out, "--split", "TEST", "--prompt", "A BRIGHT HEART",
                   "--prompt", "poor_quality=BAD IMAGE", "--top", "2")
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "EchoCLIP screen of 3 clip(s) (1 unreadable)" in printed
    # clip2 and clip3 come from the evaluation's cache: only clip4's frames are computed (clip5 is unreadable).
    res = json.loads((out / "screen.json").read_text())
    assert res["computed_frames"] == FRAMES
    assert set(res["failed"]) == {"clip5"}
    assert res["prompts"] == {"foreshortened": SCREEN_PROMPTS["foreshortened"], "poor_quality": "BAD IMAGE",
                              "a_bright_heart": "A BRIGHT HEART"}
    table = pd.read_csv(out / "screen.csv")
    assert sorted(table["FileName"]) == ["clip2", "clip3", "clip4"] and set(table["Split"]) == {"TEST"}
    # Scores are the mean over frames of the dot product of normalised embeddings, recomputed here.
    from echodfkd.data import open_dataset
    model = load_clip_model(str(tiny_ckpt))
    ds = open_dataset(root)
    text = model.encode_texts(["A BRIGHT HEART"])[0]
    for name in ("clip2", "clip4"):
        emb = model.encode_images(model.preprocess_frames(ds.video(name)[0]))
        got = table.set_index("FileName").loc[name, "score_a_bright_heart"]
        assert got == pytest.approx(float((emb @ text).mean()), abs=1e-5)
    for name in res["prompts"]:
        by_score = table.sort_values(f"score_{name}", ascending=False)["FileName"].tolist()
        by_rank = table.sort_values(f"rank_{name}")["FileName"].tolist()
        assert by_score == by_rank and sorted(table[f"rank_{name}"]) == [1, 2, 3]
    assert res["figures"] == ["figures/screen_foreshortened.png", "figures/screen_poor_quality.png",
                              "figures/screen_a_bright_heart.png"]
    assert (out / "figures" / "screen_a_bright_heart.png").stat().st_size > 2000
    md = (out / "screen.md").read_text()
    assert "## a_bright_heart" in md and "![foreshortened](figures/screen_foreshortened.png)" in md
    assert "`clip5`" in md
    # A second screen with a new prompt embeds no frame at all.
    assert main(_screen(root, tiny_ckpt, cache, tmp_path / "again", "--split", "TEST",
                        "--no-default-prompts", "--prompt", "ANOTHER")) == 0
    assert json.loads((tmp_path / "again" / "screen.json").read_text())["computed_frames"] == 0


def test_curated_list_merges_into_checks_corrupted_csv(tiny_ckpt, data, tmp_path):
    root, _ = data
    listed = tmp_path / "corrupted.csv"
    listed.write_text("FileName,reason\nclip5,unreadable\nclip0,ed_es_too_close\n")  # as `check --out` writes
    argv = _screen(root, tiny_ckpt, tmp_path / "cache", tmp_path / "s", "--curate", "foreshortened:2",
                   "--curate", "poor_quality:50%", "--curated", str(listed))
    assert main(argv) == 0
    rows = pd.read_csv(listed, dtype=str, keep_default_na=False)
    assert rows.columns.tolist() == ["FileName", "reason", "detail"]
    assert rows["reason"].tolist()[:2] == ["unreadable", "ed_es_too_close"]
    ours = rows[rows["reason"].str.startswith("echoclip_")]
    assert (ours["reason"] == "echoclip_foreshortened").sum() == 2
    assert (ours["reason"] == "echoclip_poor_quality").sum() == 2          # 50 % of the 5 readable clips
    table = pd.read_csv(tmp_path / "s" / "screen.csv").sort_values("score_foreshortened", ascending=False)
    assert set(ours.loc[ours["reason"] == "echoclip_foreshortened", "FileName"]) == set(table["FileName"][:2])
    bad = read_corrupted(listed)                                         # what evaluate --corrupted reads
    assert bad["clip5"] == "unreadable" and set(bad) >= set(table["FileName"][:2])
    # A rerun replaces the earlier screen's rows and keeps check's.
    assert main(_screen(root, tiny_ckpt, tmp_path / "cache", tmp_path / "s2", "--curate", "foreshortened:1",
                        "--curated", str(listed))) == 0
    again = pd.read_csv(listed, dtype=str, keep_default_na=False)
    assert again["reason"].tolist() == ["unreadable", "ed_es_too_close", "echoclip_foreshortened"]
    assert "rank 1 of 5" in again["detail"].iloc[-1]
    # Without --curated the list goes to REPORT/curated.csv.
    assert main(_screen(root, tiny_ckpt, tmp_path / "cache", tmp_path / "s3", "--curate", "foreshortened:1")) == 0
    assert (tmp_path / "s3" / "curated.csv").read_text().startswith("FileName,reason,detail\n")


def test_prompt_names():
    assert prompt_name("A Bright, bright HEART!") == "a_bright_bright_heart" and prompt_name("3 chambers") == "p_3_chambers"
    p = screen_prompts(["foreshortened=SHORT APEX", "LV THROMBUS"], defaults=True)
    assert p["foreshortened"] == "SHORT APEX" and p["lv_thrombus"] == "LV THROMBUS" and "poor_quality" in p
    assert screen_prompts(["X"], defaults=False) == {"x": "X"}


@pytest.mark.parametrize("extra, words", [
    (["--predictions", "PRED"], ["--screen ranks the clips themselves"]),
    (["--curate", "nosuch:3"], ["--curate 'nosuch:3'", "foreshortened"]),
    (["--curate", "foreshortened:many"], ["'many' is not a count"]),
    (["--curated", "x.csv"], ["--curated needs at least one --curate"]),
    (["--prompt", "poor_quality="], ["empty prompt text"]),
])
def test_screen_errors_are_one_line(tiny_ckpt, data, tmp_path, capsys, extra, words):
    root, pred = data
    extra = [str(pred) if e == "PRED" else e for e in extra]
    assert main(_screen(root, tiny_ckpt, tmp_path / "cache", tmp_path / "o", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_evaluation_still_needs_predictions(tiny_ckpt, data, tmp_path, capsys):
    root, _ = data
    assert main(["echoclip", "--data", str(root), "--echoclip", str(tiny_ckpt), "--out", str(tmp_path / "o")]) == 2
    assert "--predictions PRED is required (or --screen" in capsys.readouterr().err
