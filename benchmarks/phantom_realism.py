"""How close the phantom is to a real clip: simple image statistics, real A4C fixture vs phantom clips.

Usage: python benchmarks/phantom_realism.py [--real ../shared/fixtures/a4c_112x112_50fps.avi]
       [--filelist ../shared/fixtures/echonet_dynamic_FileList.csv] [--clips 8] [--seed 0] [--json]

Every statistic is computed the same way on the real clip and on phantom clips (112x112), inside the
imaging sector (pixels that are ever brighter than 8 grey levels):
- intensity: mean, standard deviation and 5/50/95th percentiles of the sector's grey levels, the share
  of near-black pixels (< 20, blood and dropout), and the Wasserstein-1 distance between each phantom
  clip's grey-level distribution and the real one (grey levels; 0 = identical distributions);
- speckle: autocorrelation length of the high-pass image (frame minus a 3 px Gaussian blur) along the
  beam (vertical, axial) and across it (horizontal, lateral): the lag in pixels where the normalised
  autocorrelation falls to 0.5;
- motion: mean correlation between consecutive frames (depends on the frame rate: stated per row);
- anatomy: LV area fraction at ED and ES (phantom ground truth; the real clip has no mask), and the EF
  distribution of phantom clips against the real EchoNet-Dynamic FileList when it is given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage, stats

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


def sector_mask(frames: np.ndarray, level: int = 8) -> np.ndarray:
    """Pixels of the imaging fan: brighter than `level` in at least one frame, holes filled."""
    mask = frames.max(axis=0) > level
    mask = ndimage.binary_opening(mask, iterations=1)
    return ndimage.binary_fill_holes(mask)


def correlation_length(frames: np.ndarray, mask: np.ndarray, axis: int, max_lag: int = 12) -> float:
    """Lag (pixels, interpolated) where the high-pass image's normalised autocorrelation drops to 0.5."""
    highpass = [f.astype(np.float64) - ndimage.gaussian_filter(f.astype(np.float64), 3.0) for f in frames]
    rho = []
    for lag in range(max_lag + 1):
        num = den = 0.0
        for hp in highpass:
            a = hp if lag == 0 else (hp[lag:] if axis == 0 else hp[:, lag:])
            b = hp if lag == 0 else (hp[:-lag] if axis == 0 else hp[:, :-lag])
            m = mask if lag == 0 else ((mask[lag:] & mask[:-lag]) if axis == 0 else (mask[:, lag:] & mask[:, :-lag]))
            a, b = a[m] - a[m].mean(), b[m] - b[m].mean()
            num += float((a * b).sum())
            den += float(np.sqrt((a * a).sum() * (b * b).sum()))
        rho.append(num / den if den else 0.0)
    rho = np.asarray(rho)
    below = np.flatnonzero(rho < 0.5)
    if not below.size:
        return float(max_lag)
    k = int(below[0])
    return float(k - 1 + (rho[k - 1] - 0.5) / (rho[k - 1] - rho[k]))


def clip_stats(frames: np.ndarray, fps: float) -> dict:
    """Every image statistic of one clip (see module doc)."""
    mask = sector_mask(frames)
    values = frames[:, mask].ravel().astype(np.float64)
    sub = frames[:: max(1, len(frames) // 24)]  # ~24 frames are plenty for the correlation lengths
    corr = [np.corrcoef(a[mask].ravel(), b[mask].ravel())[0, 1] for a, b in zip(frames[:-1], frames[1:])]
    return {"fps": float(fps), "frames": int(len(frames)), "sector_fraction": float(mask.mean()),
            "mean": float(values.mean()), "std": float(values.std()),
            "p5": float(np.percentile(values, 5)), "p50": float(np.percentile(values, 50)),
            "p95": float(np.percentile(values, 95)), "dark_fraction": float((values < 20).mean()),
            "speckle_axial_px": correlation_length(sub, mask, axis=0),
            "speckle_lateral_px": correlation_length(sub, mask, axis=1),
            "frame_to_frame_corr": float(np.nanmean(corr)), "_values": values}


def phantom_stats(style: str, clips: int, seed: int) -> list[dict]:
    """Statistics of `clips` phantom clips of one style, with their LV area fractions and EF."""
    from echodfkd.data.phantom import make_clip

    out = []
    for i in range(clips):
        clip = make_clip(seed, i, style, 112)
        s = clip_stats(clip.frames, clip.fps)
        area = clip.lv.mean(axis=(1, 2))
        s.update(lv_area_ed=float(area[clip.ed].mean()) if clip.ed.size else None,
                 lv_area_es=float(area[clip.es].mean()) if clip.es.size else None, ef=float(clip.ef))
        out.append(s)
    return out


def summarise(rows: list[dict], real_values: np.ndarray | None) -> dict:
    """Mean ± std over clips of each statistic, plus the Wasserstein-1 distance to the real histogram."""
    keys = [k for k in rows[0] if not k.startswith("_") and rows[0][k] is not None]
    out = {k: (float(np.mean([r[k] for r in rows if r.get(k) is not None])),
               float(np.std([r[k] for r in rows if r.get(k) is not None]))) for k in keys}
    if real_values is not None:
        w = [stats.wasserstein_distance(r["_values"], real_values) for r in rows]
        out["w1_to_real"] = (float(np.mean(w)), float(np.std(w)))
    return out


def real_clips(fixtures: Path) -> dict[str, np.ndarray]:
    """Every real clip of the fixtures at 112x112, framed the way `echodfkd predict` frames it."""
    from echodfkd.data.convert import prepare_clip

    paths = sorted((fixtures / "echonet_dev" / "Videos").glob("*.avi"))
    paths += [fixtures / n for n in ("a4c_112x112_50fps.avi", "a4c_582x582_30fps_ecg.mp4") if (fixtures / n).is_file()]
    return {p.name: prepare_clip(p, mode="auto").frames for p in paths}


def domain_classifier(real: dict[str, np.ndarray], clips: int, seed: int, steps: int = 300, repeats: int = 1,
                      test_frames: int = 64) -> dict:
    """Held-out accuracy of a small CNN telling phantom frames from real ones (0.5 = indistinguishable).

    Leave-one-real-clip-out: each fold trains on the other real clips and on phantom clips of both styles,
    then scores frames of the held-out real clip and of phantom clips it has not seen (balanced). With
    `repeats` > 1 each fold trains that many nets from different seeds: one net's accuracy moves by several
    points from run to run, so compare phantom versions on the mean and its standard error.
    """
    import torch
    from torch import nn

    from echodfkd.data.phantom import make_clip

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    phantom = [make_clip(seed + 100, i, style, 112).frames for i in range(clips) for style in ("dynamic", "synthetic")]

    def sample(videos: list[np.ndarray], n: int) -> np.ndarray:
        out = [v[rng.integers(len(v))] for v in (videos[i] for i in rng.integers(len(videos), size=n))]
        return np.stack(out)[:, None].astype(np.float32) / 255.0

    accuracies: dict[str, float] = {}
    fold_runs: list[float] = []
    names = list(real)
    for held, rep in ((h, r) for r in range(repeats) for h in names):
        torch.manual_seed(seed + 1000 * rep)
        train_real = [real[n] for n in names if n != held]
        half = len(phantom) // 2
        train_ph, test_ph = phantom[:half], phantom[half:]
        net = nn.Sequential(nn.Conv2d(1, 8, 5, 2, 2), nn.ReLU(), nn.Conv2d(8, 16, 5, 2, 2), nn.ReLU(),
                            nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(32, 1))
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        for _ in range(steps):
            x = torch.from_numpy(np.concatenate([sample(train_real, 16), sample(train_ph, 16)]))
            y = torch.cat([torch.ones(16), torch.zeros(16)])
            loss = nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            xr = torch.from_numpy(sample([real[held]], test_frames))
            xp = torch.from_numpy(sample(test_ph, test_frames))
            correct = (net(xr)[:, 0] > 0).float().mean() + (net(xp)[:, 0] <= 0).float().mean()
        accuracies[held] = accuracies.get(held, 0.0) + float(correct / 2) / repeats
        fold_runs.append(float(correct / 2))
    # One repeat (every fold, one seed) gives one sample of the mean accuracy.
    runs = [float(np.mean(fold_runs[r * len(names):(r + 1) * len(names)])) for r in range(repeats)]
    sem = float(np.std(runs, ddof=1) / np.sqrt(len(runs))) if len(runs) > 1 else None
    return {"per_fold": accuracies, "mean": float(np.mean(list(accuracies.values()))), "steps": steps,
            "repeats": repeats, "per_repeat": runs, "sem": sem, "phantom_clips": len(phantom)}


def contact_sheet(path: Path, real: dict[str, np.ndarray], clips: int, seed: int) -> Path:
    """PNG: a row of real frames, then rows of dynamic and synthetic phantom frames (two per clip), at 2x."""
    import cv2

    from echodfkd.data.phantom import make_clip

    per_row = 2 * clips
    rows = []
    real_tiles = [v[i] for v in real.values() for i in (0, len(v) // 3)]
    rows.append((real_tiles * per_row)[:per_row])
    for style in ("dynamic", "synthetic"):
        tiles = []
        for i in range(clips):
            v = make_clip(seed, i, style, 112).frames
            tiles += [v[0], v[len(v) // 3]]
        rows.append(tiles)
    sheet = np.vstack([np.hstack(r) for r in rows])
    sheet = cv2.resize(sheet, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet)
    return path


def main() -> None:
    """Compute and print the comparison table (Markdown) or JSON."""
    from echodfkd.io.video import read_video

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", default=str(FIXTURES / "a4c_112x112_50fps.avi"))
    ap.add_argument("--filelist", default=str(FIXTURES / "echonet_dynamic_FileList.csv"))
    ap.add_argument("--clips", type=int, default=8, help="phantom clips per style")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sheet", type=Path, default=None,
                    help="write a contact sheet PNG: real frames (top row), dynamic and synthetic phantom rows")
    ap.add_argument("--repeats", type=int, default=1,
                    help="classifier nets per fold, from different seeds (report mean ± standard error)")
    ap.add_argument("--classifier", action="store_true",
                    help="also train a small phantom-vs-real frame classifier (leave one real clip out; ~1-2 min)")
    args = ap.parse_args()

    frames, fps = read_video(args.real)
    real = clip_stats(frames, fps)
    real_values = real["_values"]
    table = {"real clip": summarise([real], None)}
    for style in ("dynamic", "synthetic"):
        table[f"phantom {style}"] = summarise(phantom_stats(style, args.clips, args.seed), real_values)
    ef = None
    if Path(args.filelist).is_file():
        import pandas as pd

        real_ef = pd.read_csv(args.filelist)["EF"].to_numpy(dtype=float)
        ef = {"echonet_filelist": (float(real_ef.mean()), float(real_ef.std())),
              "phantom dynamic": table["phantom dynamic"]["ef"]}
    others = {}
    classifier = None
    if (FIXTURES / "echonet_dev").is_dir():
        reals = real_clips(FIXTURES)
        for name, clip in reals.items():
            if Path(name).name != Path(args.real).name:
                others[name] = summarise([clip_stats(clip, 50.0)], None)
        if args.classifier:
            classifier = domain_classifier(reals, args.clips, args.seed, repeats=args.repeats)
        if args.sheet:
            contact_sheet(args.sheet, reals, min(args.clips, 5), args.seed)
    if args.json:
        print(json.dumps({"table": table, "ef": ef, "real": args.real, "clips": args.clips, "seed": args.seed,
                          "other_real_clips": others, "domain_classifier": classifier}, indent=1))
        return
    rows = [("fps", 0), ("frames", 0), ("sector_fraction", 3), ("mean", 1), ("std", 1), ("p5", 1), ("p50", 1),
            ("p95", 1), ("dark_fraction", 3), ("w1_to_real", 1), ("speckle_axial_px", 2),
            ("speckle_lateral_px", 2), ("frame_to_frame_corr", 3), ("lv_area_ed", 3), ("lv_area_es", 3), ("ef", 1)]
    cols = list(table)
    print("| statistic | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for key, nd in rows:
        cells = []
        for c in cols:
            v = table[c].get(key)
            if v is None:
                cells.append("—")
            else:
                cells.append(f"{v[0]:.{nd}f}" if c == "real clip" else f"{v[0]:.{nd}f} ± {v[1]:.{nd}f}")
        print(f"| {key} | " + " | ".join(cells) + " |")
    if ef:
        print(f"\nEF (%): EchoNet-Dynamic FileList {ef['echonet_filelist'][0]:.1f} ± {ef['echonet_filelist'][1]:.1f} "
              f"(10,030 clips); phantom dynamic {ef['phantom dynamic'][0]:.1f} ± {ef['phantom dynamic'][1]:.1f} "
              f"({args.clips} clips)")
    if others:
        print("\nThe other real fixture clips (framed as predict frames them):")
        keys = ("mean", "p50", "p95", "dark_fraction", "speckle_axial_px", "speckle_lateral_px")
        print("| clip | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        for name, st in others.items():
            print(f"| {name} | " + " | ".join(f"{st[k][0]:.2f}" for k in keys) + " |")
    if classifier:
        folds = ", ".join(f"{k} {v:.2f}" for k, v in classifier["per_fold"].items())
        spread = (f" ± {classifier['sem']:.3f} (standard error over {classifier['repeats']} repeats)"
                  if classifier["sem"] is not None else "")
        print(f"\nDomain classifier (small CNN, {classifier['steps']} steps per fold, leave one real clip out): "
              f"held-out accuracy {classifier['mean']:.3f}{spread} (0.5 = phantom and real indistinguishable); {folds}")
    print(f"\nReal clip: {args.real} ({real['frames']} frames at {real['fps']:.0f} fps); phantom: {args.clips} clips "
          f"per style, seed {args.seed}, 112x112. Mean ± std over clips.")


if __name__ == "__main__":
    main()
