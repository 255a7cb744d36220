"""`echodfkd echoclip`: judge masks and find ED/ES frames with EchoCLIP; `--screen` ranks the clips themselves."""

from __future__ import annotations

import argparse
import json

from echodfkd.commands import _flags

NAME = "echoclip"
HELP = "score masks and cardiac phase with EchoCLIP (open_clip); --screen ranks a dataset's clips by prompts"
DESCRIPTION = (
    "Mask quality: (a) mask blackened -> similarity to WALL; (b) mask dilated by 5 px and blackened -> "
    "LEFT VENTRICLE minus NOTHING; combined = WALL + NOTHING - LEFT VENTRICLE (higher is better). Phase: "
    "detrended cumulative sum of sim(THE MITRAL VALVE IS CLOSED) - sim(THE MITRAL VALVE IS OPEN) -> ED/ES by "
    "the aFD method; aFD of each model's frames against EchoCLIP's and of EchoCLIP's against humans. "
    "Frame embeddings are cached per clip and mask variant, so reruns and extra models cost nothing. "
    "Writes REPORT/echoclip.json, REPORT/echoclip.md and REPORT/figures/*.png. Works offline from the "
    "Hugging Face cache, a local-dir:DIR or a checkpoint file. "
    "--screen (no --predictions): rank every clip by the mean similarity of its raw frames to prompts "
    "(default: foreshortened view, poor image quality; add any with --prompt TEXT or NAME=TEXT), from the "
    "same cached frame embeddings; writes REPORT/screen.csv, screen.json, screen.md and a contact sheet "
    "figures/screen_<NAME>.png of the --top clips at each end (supplement Fig. 9). --curate NAME:N flags "
    "the N clips most like prompt NAME in --curated CSV (corrupted.csv format, merged into an existing "
    "list such as check's), for `evaluate --corrupted`."
)
PROMPT_KEYS = ("wall", "lv", "nothing", "closed", "open")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    _flags.add_data(parser, help="dataset folder (EchoNet layout)", type=_flags.dir_path)
    parser.add_argument("--predictions", nargs="+", metavar="PRED", type=_flags.dir_path,
                        help="predictions folder(s) of <FileName>.npz (key masks); a folder of such "
                             "folders is a sweep (scores by model size); required unless --screen")
    _flags.add_out(parser, "report")
    _flags.add_echoclip(parser, default="hf-hub:mkaichristensen/echo-clip")
    _flags.add_deprecated(parser, "--model", "--echoclip", "echoclip", metavar="MODEL")
    parser.add_argument("--echoclip-arch", default=None, metavar="NAME",
                        help="open_clip architecture of a checkpoint file (default: its folder's "
                             "open_clip_config.json, else inferred from the weights' shapes)")
    _flags.add_deprecated(parser, "--arch", "--echoclip-arch", "echoclip_arch", metavar="NAME")
    parser.add_argument("--offline", action="store_true",
                        help="never contact the Hugging Face hub (also: HF_HUB_OFFLINE=1)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="embedding cache (default: $ECHODFKD_CACHE/echoclip or ~/.cache/echodfkd/echoclip)")
    parser.add_argument("--no-cache", action="store_true", help="keep embeddings in memory only")
    _flags.add_device(parser, help="where the model runs: cpu, cuda, cuda:N, mps, auto")
    _flags.add_precision(parser, default="auto", help="bf16 = autocast; auto: bf16 on cuda, fp32 elsewhere")
    parser.add_argument("--batch-size", type=_flags.positive_int, default=32, metavar="N", help="frames per forward pass")
    parser.add_argument("--split", default=None,
                        help="TRAIN, VAL, TEST, a comma list, or all (default: TEST; all with --screen)")
    parser.add_argument("--max-clips", type=_flags.positive_int, default=None, metavar="N",
                        help="evaluate the first N clips only")
    parser.add_argument("--threshold", type=_flags.unit_float, default=0.5, metavar="T",
                        help="mask = soft >= T*255 (the reference used 127/255)")
    parser.add_argument("--dilation", type=_flags.nonnegative_int, default=5, metavar="PX",
                        help="dilation radius of variant (b)")
    parser.add_argument("--phase-sign", type=float, default=1.0, choices=(1.0, -1.0),
                        help="orientation of the integrated signal (ED = its maximum)")
    parser.add_argument("--prompt", action="append", default=[], metavar="KEY=TEXT",
                        help=f"override a prompt; keys: {', '.join(PROMPT_KEYS)}. With --screen: TEXT adds a "
                             "prompt, NAME=TEXT adds or replaces one (foreshortened, poor_quality)")
    parser.add_argument("--figures", type=_flags.nonnegative_int, default=3, metavar="N",
                        help="Fig. 5-like plots for the first N clips")
    parser.add_argument("--fps", type=_flags.positive_float, default=None, metavar="FPS",
                        help="true frame rate of a folder without tracings whose AVI headers are wrong")
    _flags.add_json(parser, help="print the summary (and the report's paths) as JSON")
    screen = parser.add_argument_group("screening (--screen)")
    screen.add_argument("--screen", action="store_true",
                        help="rank the dataset's clips by prompts on their raw frames instead of scoring masks")
    screen.add_argument("--top", type=_flags.positive_int, default=6, metavar="K",
                        help="clips shown at each end of each prompt's contact sheet")
    screen.add_argument("--no-default-prompts", action="store_true",
                        help="screen with the --prompt prompts only")
    screen.add_argument("--curate", action="append", default=[], metavar="NAME:N",
                        help="flag the N (or P%%) clips most like prompt NAME in --curated; repeatable")
    screen.add_argument("--curated", default=None, metavar="CSV",
                        help="curated list to write, merged into the file when it exists (corrupted.csv "
                             "format; default REPORT/curated.csv when --curate is given)")


def _prompts(items: list[str]) -> dict:
    from echodfkd.errors import EchoDFKDError
    from echodfkd.evaluate.echoclip.scores import DEFAULT_PROMPTS
    prompts = dict(DEFAULT_PROMPTS)
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key.strip() not in PROMPT_KEYS or not text.strip():
            raise EchoDFKDError(f"--prompt {item!r}: expected KEY=TEXT with KEY one of {', '.join(PROMPT_KEYS)}")
        prompts[key.strip()] = text.strip()
    return prompts


def run(args: argparse.Namespace) -> int:
    """Load the model, evaluate, write the report and print a short summary."""
    from echodfkd.errors import EchoDFKDError
    from echodfkd.evaluate.echoclip.embed import default_cache_dir
    from echodfkd.report.echoclip import write_report
    from echodfkd.evaluate.echoclip.runner import Settings, run_echoclip

    if args.screen:
        return _screen(args)
    if not args.predictions:
        raise EchoDFKDError("--predictions PRED is required (or --screen to rank the clips themselves)")
    if args.curate or args.curated:
        raise EchoDFKDError("--curate/--curated go with --screen")
    out = _flags.check_writable_dir(args.out)  # before the model loads
    settings = Settings(threshold=args.threshold, dilation=args.dilation, prompts=_prompts(args.prompt),
                        phase_sign=args.phase_sign, split=args.split or "TEST", max_clips=args.max_clips,
                        figure_clips=max(0, args.figures))
    cache = None if args.no_cache else (args.cache or default_cache_dir())
    model = _load(args, cache)
    results, figures = run_echoclip(args.data, args.predictions, model, cache, settings,
                                    batch_size=args.batch_size, fps_override=args.fps)
    paths = write_report(results, figures, out)
    if args.json:
        print(json.dumps({"summary": results["summary"], "report": {k: str(v) for k, v in paths.items()}},
                         indent=2, default=str))
        return 0
    s = results["summary"]
    eh = s["echoclip_vs_human"]
    print(f"EchoCLIP on {s['clips']} clip(s); {results['embeddings']['computed_frames']} frame(s) embedded "
          f"this run; EchoCLIP vs humans aFD ED {_f(eh['ED'])} ES {_f(eh['ES'])}")
    for name, m in s["models"].items():
        a = m["afd_vs_echoclip"]
        print(f"  {name}: combined {_f(m['combined'], 4)} (WALL {_f(m['wall'], 4)}, LV {_f(m['lv'], 4)}, "
              f"NOTHING {_f(m['nothing'], 4)}); aFD vs EchoCLIP ED {_f(a['ED'])} ES {_f(a['ES'])}")
    print(f"wrote {paths['json']} and {paths['md']}")
    return 0


def _load(args: argparse.Namespace, cache) -> object:
    """The open_clip model of --echoclip on --device ('auto': CUDA when visible) at --precision."""
    from echodfkd.evaluate.echoclip.model import load_clip_model

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_clip_model(args.echoclip, arch=args.echoclip_arch, device=device,
                           precision=None if args.precision == "auto" else args.precision,
                           offline=args.offline, hash_dir=cache)


def _f(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _screen(args: argparse.Namespace) -> int:
    """`--screen`: rank the clips by prompts, write the CSV, report, contact sheets and curated list."""
    from pathlib import Path

    from echodfkd.data import open_dataset
    from echodfkd.errors import EchoDFKDError
    from echodfkd.evaluate.echoclip.embed import default_cache_dir
    from echodfkd.evaluate.echoclip.screen import curated_rows, parse_curate, screen_dataset, screen_prompts
    from echodfkd.report.screen import merge_curated, write_screen

    if args.predictions:
        raise EchoDFKDError("--screen ranks the clips themselves; drop --predictions (or drop --screen)")
    prompts = screen_prompts(args.prompt, defaults=not args.no_default_prompts)
    parse_curate(args.curate, prompts, 0)  # refuse a bad --curate before the model loads
    if args.curated and not args.curate:
        raise EchoDFKDError("--curated needs at least one --curate NAME:N")
    split = None if (args.split or "all").lower() == "all" else args.split
    out = _flags.check_writable_dir(args.out)
    cache = None if args.no_cache else (args.cache or default_cache_dir())
    model = _load(args, cache)
    result = screen_dataset(args.data, model, cache, prompts, split=split, max_clips=args.max_clips,
                            batch_size=args.batch_size, fps_override=args.fps)
    counts = parse_curate(args.curate, prompts, len(result.table))
    meta = {"model": {"spec": model.spec, "arch": model.arch, "weights_sha256": model.weights_hash,
                      "key": model.key}, "data": str(args.data), "split": split,
            "cache": str(cache) if cache else None}
    if counts:
        target = Path(args.curated) if args.curated else out / "curated.csv"
        meta["curated"] = merge_curated(target, curated_rows(result.table, counts, prompts))
        meta["curate_counts"] = [f"{k}: {v}" for k, v in counts.items()]
    ds = open_dataset(args.data, fps_override=args.fps)
    paths = write_screen(ds, result, out, meta, args.top)
    if args.json:
        print(json.dumps({**meta, "clips": len(result.table), "unreadable": len(result.failed),
                          "report": {k: str(v) for k, v in paths.items()}}, indent=2, default=str))
        return 0
    print(f"EchoCLIP screen of {len(result.table)} clip(s) ({len(result.failed)} unreadable); "
          f"{result.computed_frames} frame(s) embedded this run")
    for name in prompts:
        col = result.table.sort_values(f"score_{name}", ascending=False)
        print(f"  {name}: most {col.iloc[0]['FileName']} ({col.iloc[0][f'score_{name}']:.4f}), "
              f"least {col.iloc[-1]['FileName']} ({col.iloc[-1][f'score_{name}']:.4f})")
    if counts:
        c = meta["curated"]
        print(f"curated list {c['path']}: {c['added']} row(s) added, {c['kept']} kept, {c['replaced']} replaced")
    print(f"wrote {paths['csv']} and {paths['md']}")
    return 0
