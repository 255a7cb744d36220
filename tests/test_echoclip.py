"""EchoCLIP evaluation: masking/dilation, model loading routes, embedding cache, phase pipeline, CLI.

A tiny randomly initialised open_clip model (ViT image tower at 32 px, 1-layer text tower with the real
CLIP tokenizer vocabulary) is registered and built at test time: no download, no network.
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
from echodfkd.errors import ModelError  # noqa: E402
from echodfkd.evaluate.echoclip import scores as sc  # noqa: E402
from echodfkd.evaluate.echoclip.arch import infer_open_clip_config  # noqa: E402
from echodfkd.evaluate.echoclip.embed import EmbedJob, FrameEmbedder  # noqa: E402
from echodfkd.evaluate.echoclip.model import file_sha256, load_clip_model, register_config  # noqa: E402
from echodfkd.io.video import write_video  # noqa: E402
from tiny_models import TINY_CLIP, register_tiny_clip  # noqa: E402

TINY_NAME = "echodfkd-test-tiny"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A random tiny CLIP registered with open_clip, saved as a plain state-dict checkpoint."""
    root = tmp_path_factory.mktemp("tiny_clip")
    register_tiny_clip(root, TINY_NAME)
    torch.manual_seed(0)
    net = open_clip.create_model(TINY_NAME)
    ckpt = root / "weights" / "tiny.pt"
    ckpt.parent.mkdir()
    torch.save(net.state_dict(), ckpt)
    return ckpt


# ----------------------------------------------------------------------------- masking and dilation
def test_dilation_grows_blackened_area_by_exact_pixel_count():
    frames = np.full((3, 112, 112), 200, np.uint8)
    masks = np.zeros((3, 112, 112), bool)
    masks[0, 50:60, 40:50] = True  # 10x10 square
    masks[1, 70, 30] = True  # one pixel
    masks[2, 0:4, 0:4] = True  # corner square: the dilation is clipped by the border
    black_a = (sc.wall_input(frames, masks) == 0).sum(axis=(1, 2))
    black_b = (sc.lv_input(frames, masks, radius=5) == 0).sum(axis=(1, 2))
    assert black_a.tolist() == [100, 1, 16]
    # Digital disk of radius 5 = 81 lattice points (Gauss); a square of side s dilated by it covers
    # s^2 + 4rs + |D| - 4r - 1 pixels.
    disk_pts = 81
    assert black_b[1] == disk_pts
    assert black_b[0] == 10 * 10 + 4 * 5 * 10 + disk_pts - 4 * 5 - 1 == 360
    # Corner: only the quarter inside the image survives: rows/cols 0..8 minus the rounded corner.
    full = 4 * 4 + 4 * 5 * 4 + disk_pts - 21
    assert 81 - 25 < black_b[2] < full
    # The dilated mask contains the original one, and radius 0 changes nothing.
    assert (sc.dilate_masks(masks, 5) >= masks).all()
    assert (sc.dilate_masks(masks, 0) == masks).all()
    # Untouched pixels keep their values.
    assert (sc.lv_input(frames, masks)[~sc.dilate_masks(masks)] == 200).all()


def test_mask_quality_is_the_reference_combination():
    q = sc.mask_quality(np.array([0.3, 0.5]), np.array([0.2, 0.2]), np.array([0.1, 0.3]))
    assert q["wall"] == pytest.approx(0.4) and q["lv"] == pytest.approx(0.2) and q["nothing"] == pytest.approx(0.2)
    assert q["combined"] == pytest.approx(0.4 + 0.2 - 0.2)
    assert q["lv_minus_nothing"] == pytest.approx(0.0)


# ----------------------------------------------------------------------------- phase pipeline
def _crafted(offset: float = 0.0, n: int = 60, period: int = 20, ed: int = 5):
    """sim(CLOSED), sim(OPEN) whose difference is the derivative of an LV-size curve (+ a constant bias)."""
    t = np.arange(n)
    size = np.cos(2 * np.pi * (t - ed) / period)
    s = np.diff(size, prepend=size[0]) + offset
    return 0.25 + s / 2, 0.25 - s / 2, size


def test_phase_pipeline_recovers_crafted_frames():
    closed, opened, size = _crafted(offset=0.03)  # a constant bias makes a linear trend; detrend removes it
    curve = sc.phase_curve(closed, opened)
    assert np.corrcoef(curve, size)[0, 1] > 0.95
    found = sc.echoclip_frames(curve)  # no human frames: every beat (a partial beat may add a clip edge)
    beats = {ph: [i["frame"] for i in found[ph] if 0 < i["frame"] < 59] for ph in ("ED", "ES")}
    assert beats == {"ED": [5, 25, 45], "ES": [15, 35, 55]}
    assert all(i["frame"] in (0, 59) for ph in ("ED", "ES") for i in found[ph] if i["frame"] not in beats[ph])
    # With human frames, the search stays on the human's beat.
    anchored = sc.echoclip_frames(curve, {"ED": [27], "ES": [13]})
    assert anchored["ED"] == [{"reference": 27, "frame": 25}]
    assert anchored["ES"] == [{"reference": 13, "frame": 15}]
    assert sc.echoclip_vs_human(anchored) == {"ED": 2.0, "ES": 2.0}
    # A model whose areas lag by 2 frames is 2 frames from EchoCLIP on every beat.
    area = np.roll(size, 2) * 100 + 500
    interior = {ph: [i for i in found[ph] if 0 < i["frame"] < 59] for ph in ("ED", "ES")}
    cmp = sc.model_vs_echoclip(area, interior)
    assert cmp["ED"]["frames"] == [7, 27, 47] and cmp["ED"]["error"] == 2.0
    assert cmp["ES"]["frames"] == [17, 37, 57] and cmp["ES"]["error"] == 2.0
    # The opposite orientation swaps the phases.
    flipped = sc.echoclip_frames(sc.phase_curve(closed, opened, sign=-1))
    assert [i["frame"] for i in flipped["ED"] if 0 < i["frame"] < 59] == [15, 35, 55]


# ----------------------------------------------------------------------------- model loading
def test_checkpoint_routes_load_the_same_weights(tiny_ckpt, tmp_path):
    by_arch = load_clip_model(str(tiny_ckpt), arch=TINY_NAME)
    inferred = load_clip_model(str(tiny_ckpt))  # architecture read from the weights' shapes
    # A local-dir folder (open_clip_config.json + weights), as an HF snapshot is laid out.
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP}))
    (folder / "open_clip_pytorch_model.bin").write_bytes(tiny_ckpt.read_bytes())
    local = load_clip_model(f"local-dir:{folder}")
    # A Hugging Face cache holding the same files, used offline.
    hub = tmp_path / "hf"
    snap = hub / "models--org--tiny" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (hub / "models--org--tiny" / "refs").mkdir()
    (hub / "models--org--tiny" / "refs" / "main").write_text("abc123")
    for f in folder.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_CACHE", str(hub))
        cached = load_clip_model("hf-hub:org/tiny", offline=True)

    frames = np.random.default_rng(0).integers(0, 256, (3, 112, 112), dtype=np.uint8)
    embs = [m.encode_images(m.preprocess_frames(frames)) for m in (by_arch, inferred, local, cached)]
    for e in embs[1:]:
        np.testing.assert_allclose(e, embs[0], atol=1e-5)
    assert embs[0].shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(embs[0], axis=1), 1.0, atol=1e-5)
    assert by_arch.weights_hash == file_sha256(tiny_ckpt) == local.weights_hash == cached.weights_hash
    assert by_arch.preprocess_frames(frames).shape == (3, 3, 32, 32)  # the model's own transform
    text = by_arch.encode_texts(["WALL", "NOTHING"])
    assert text.shape == (2, 32)
    # bf16 autocast (the GPU default) gives the same embeddings to bf16 accuracy, and its own cache key.
    half = load_clip_model(str(tiny_ckpt), arch=TINY_NAME, precision="bf16")
    np.testing.assert_allclose(half.encode_images(half.preprocess_frames(frames)), embs[0], atol=0.05)
    assert half.key != by_arch.key and local.key == by_arch.key


def test_inferred_config_matches_convnext_clip():
    # Shapes only: built on the meta device (no memory, no init time, no download).
    with torch.device("meta"):
        sd = open_clip.create_model("convnext_base_w", device="meta").state_dict()
    cfg = infer_open_clip_config({f"module.{k}": v for k, v in sd.items()})  # DataParallel prefix too
    assert cfg["embed_dim"] == 640
    assert cfg["vision_cfg"]["timm_model_name"] == "convnext_base"
    assert cfg["vision_cfg"]["image_size"] == 224
    assert (cfg["text_cfg"]["width"], cfg["text_cfg"]["heads"], cfg["text_cfg"]["layers"]) == (640, 10, 12)
    with torch.device("meta"):
        rebuilt = open_clip.create_model(register_config(cfg), device="meta").state_dict()
    assert {k: tuple(v.shape) for k, v in rebuilt.items()} == {k: tuple(v.shape) for k, v in sd.items()}


def test_missing_model_is_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(ModelError, match="huggingface-cli download"):
        load_clip_model(str(tmp_path / "nope.pt"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hf"))
    with monkeypatch.context() as mp:  # HF_HUB_OFFLINE=1 is honoured like --offline (no network attempt)
        mp.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(ModelError, match="not in the Hugging Face cache"):
            load_clip_model("hf-hub:mkaichristensen/echo-clip")
    data, pred = _dataset(tmp_path, clips=1, frames=4)
    for model in ("hf-hub:mkaichristensen/echo-clip", str(tmp_path / "missing.safetensors"),
                  f"local-dir:{tmp_path / 'nodir'}"):
        rc = main(["echoclip", "--data", str(data), "--predictions", str(pred), "--echoclip", model,
                   "--offline", "--out", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert rc == 2
        assert len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err and "huggingface-cli download" in err
    # A file that is not a checkpoint is also one line.
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    rc = main(["echoclip", "--data", str(data), "--predictions", str(pred), "--echoclip", str(bad),
               "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "bad.pt" in err


# ----------------------------------------------------------------------------- embedding cache
def test_embeddings_are_cached_and_reused(tiny_ckpt, tmp_path):
    model = load_clip_model(str(tiny_ckpt), arch=TINY_NAME)
    frames = np.random.default_rng(1).integers(0, 256, (7, 112, 112), dtype=np.uint8)
    calls = {"n": 0}

    def make():
        calls["n"] += 1
        return frames

    jobs = [EmbedJob("clipA", "raw", "video=1", 7, make), EmbedJob("clipA", "wall", "video=1|m=2", 7, make)]
    first = FrameEmbedder(model, tmp_path / "cache", batch_size=3)
    assert first.ensure(jobs) == 14 and model.image_calls == 6  # 3 batches (3+3+1) per job
    a = [first.get(j) for j in jobs]
    second = FrameEmbedder(model, tmp_path / "cache", batch_size=3)
    assert second.ensure(jobs) == 0
    b = [second.get(j) for j in jobs]
    assert second.computed_frames == 0 and model.image_calls == 6 and calls["n"] == 2
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # Batched and one-at-a-time embeddings agree.
    single = FrameEmbedder(model, None, batch_size=1)
    np.testing.assert_allclose(single.get(jobs[0]), a[0], atol=1e-5)
    # Changed inputs are a new key: recomputed, never a stale hit.
    assert second.ensure([EmbedJob("clipA", "raw", "video=CHANGED", 7, make)]) == 7


# ----------------------------------------------------------------------------- end to end
def _ellipse_masks(frames: int, size: int = 112, period: int = 12) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    out = []
    for t in range(frames):
        r = 18 + 8 * np.cos(2 * np.pi * t / period)
        out.append(((yy - 56) / (r * 1.4)) ** 2 + ((xx - 56) / r) ** 2 <= 1)
    return np.stack(out)


def _dataset(root: Path, clips: int = 2, frames: int = 12) -> tuple[Path, Path]:
    """Tiny EchoNet-layout folder (one clip with phantom ground truth) and a predictions folder."""
    data, pred = root / "data", root / "pred"
    (data / "Videos").mkdir(parents=True)
    (data / "GroundTruth").mkdir()
    pred.mkdir()
    lv = _ellipse_masks(frames)
    rng = np.random.default_rng(2)
    names = [f"clip{i}" for i in range(clips)]
    for i, name in enumerate(names):
        video = np.where(lv, 20, 150).astype(np.uint8) + rng.integers(0, 30, lv.shape).astype(np.uint8)
        write_video(data / "Videos" / f"{name}.avi", video, fps=50)
        np.savez(pred / f"{name}.npz", masks=(lv * 230).astype(np.uint8))
        if i == 0:
            np.savez(data / "GroundTruth" / f"{name}.npz", lv=lv, rv=np.zeros_like(lv), ed=np.array([0]),
                     es=np.array([6]), ef=np.array(60.0))
    pd.DataFrame({"FileName": names, "EF": 60.0, "Split": "TEST"}).to_csv(data / "FileList.csv", index=False)
    (pred / "meta.json").write_text(json.dumps({"threshold_dice": 0.3, "threshold_afd": 0.1}))
    return data, pred


def test_cli_end_to_end_with_tiny_model(tiny_ckpt, tmp_path, capsys):
    data, pred = _dataset(tmp_path)
    sweep = tmp_path / "sweep"
    for name, params, grow in (("small", 1000, 0), ("large", 50000, 3)):
        (sweep / name).mkdir(parents=True)
        for clip in ("clip0", "clip1"):
            m = sc.dilate_masks(_ellipse_masks(12), grow)
            np.savez(sweep / name / f"{clip}.npz", masks=(m * 255).astype(np.uint8))
        (sweep / name / "meta.json").write_text(json.dumps({"threshold_afd": 0.5, "params": params}))
    out = tmp_path / "report"
    argv = ["echoclip", "--data", str(data), "--predictions", str(pred), str(sweep), "--echoclip", str(tiny_ckpt),
            "--cache", str(tmp_path / "cache"), "--out", str(out), "--batch-size", "8", "--max-clips", "2",
            "--prompt", "nothing=EMPTY"]
    assert main(argv) == 0
    res = json.loads((out / "echoclip.json").read_text())
    assert res["embeddings"]["computed_frames"] == 2 * 12 * (1 + 2 * 3)
    s = res["summary"]
    assert s["clips"] == 2 and s["clips_with_human"] == 1
    assert set(s["models"]) == {"pred", "sweep/small", "sweep/large"}
    for m in s["models"].values():
        assert np.isfinite(m["combined"]) and m["clips"] == 2
        assert m["combined"] == pytest.approx(m["wall"] + m["nothing"] - m["lv"])
    assert s["models"]["pred"]["area_threshold"] == 0.1  # from the folder's meta.json
    assert [r["params"] for r in s["sweeps"]["sweep"]] == [1000, 50000]
    assert res["settings"]["prompts"]["nothing"] == "EMPTY"
    clip0 = res["per_clip"]["clip0"]
    assert clip0["human"] == {"ED": [0], "ES": [6]} and clip0["echoclip_vs_human"]["ED"] is not None
    assert res["per_clip"]["clip1"]["human"] == {}
    md = (out / "echoclip.md").read_text()
    assert "Mask quality" in md and "sweep/large" in md
    assert (out / "figures" / "phase_clip0.png").stat().st_size > 0
    assert (out / "figures" / "sweep_sweep.png").is_file()
    # A second run computes no embedding at all.
    capsys.readouterr()
    assert main(argv) == 0
    assert json.loads((out / "echoclip.json").read_text())["embeddings"]["computed_frames"] == 0
    assert "0 frame(s) embedded" in capsys.readouterr().out


def test_predictions_of_another_dataset_are_refused(tiny_ckpt, tmp_path, capsys):
    data, _ = _dataset(tmp_path)
    other = tmp_path / "other_pred"
    other.mkdir()
    np.savez(other / "unrelated_clip.npz", masks=(_ellipse_masks(12) * 255).astype(np.uint8))
    out = tmp_path / "report"
    rc = main(["echoclip", "--data", str(data), "--predictions", str(other), "--echoclip", str(tiny_ckpt),
               "--cache", str(tmp_path / "cache"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "another dataset" in err, err
    assert not (out / "echoclip.json").exists()
