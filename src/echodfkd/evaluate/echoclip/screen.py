"""Screen a dataset's clips with EchoCLIP prompts on the raw frames (paper §3.4, supplement Fig. 9).

Each clip's score for a prompt is the mean, over its frames, of sim(frame, prompt) (dot product of
L2-normalised embeddings). The raw-frame embeddings are the very cache entries the EchoCLIP evaluation
keeps (`raw_job`, same key), so screening a folder the evaluation has seen embeds nothing, and adding a
prompt later costs one text embedding. Rank 1 = the clip most like the prompt.

The default prompts follow echo-report wording (EchoCLIP was trained on report text); they have not
been validated against the released weights here, so check the contact sheet before trusting a list.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from echodfkd.errors import DatasetError, EchoDFKDError
from echodfkd.evaluate.echoclip.embed import FrameEmbedder
from echodfkd.evaluate.echoclip.runner import raw_job
from echodfkd.evaluate.echoclip.scores import similarities
from echodfkd.progress import progress

SCREEN_PROMPTS = {
    "foreshortened": "APICAL VIEWS ARE FORESHORTENED",
    "poor_quality": "TECHNICALLY DIFFICULT STUDY WITH POOR IMAGE QUALITY",
}
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def prompt_name(text: str) -> str:
    """A column-safe name for a free-text prompt: lower-case words joined by '_' (at most 40 chars)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    name = "_".join(words)[:40].strip("_") or "prompt"
    return name if name[0].isalpha() else f"p_{name}"[:40]


def screen_prompts(items: Sequence[str], defaults: bool = True) -> dict[str, str]:
    """Prompts by name: the defaults, overridden/extended by NAME=TEXT items, plus plain TEXT items."""
    prompts = dict(SCREEN_PROMPTS) if defaults else {}
    for item in items:
        key, sep, text = item.partition("=")
        if sep and _NAME.fullmatch(key.strip()):
            name, text = key.strip(), text.strip()
        else:
            name, text = prompt_name(item), item.strip()
        if not text:
            raise EchoDFKDError(f"--prompt {item!r}: empty prompt text")
        prompts[name] = text
    if not prompts:
        raise EchoDFKDError("no prompt to screen with")
    return prompts


@dataclass
class ScreenResult:
    """Per-clip scores (one row per clip) and what produced them."""

    table: pd.DataFrame
    prompts: dict[str, str]
    failed: dict[str, str] = field(default_factory=dict)
    computed_frames: int = 0


def screen_dataset(data: str | os.PathLike, model: Any, cache_dir: str | os.PathLike | None,
                   prompts: dict[str, str], split: str | None = None, max_clips: int | None = None,
                   batch_size: int = 32, fps_override: float | None = None) -> ScreenResult:
    """Score every clip of `split` against every prompt; unreadable clips are listed, not fatal."""
    from echodfkd.data import open_dataset

    ds = open_dataset(data, fps_override=fps_override)
    names = ds.names(split)
    if max_clips is not None:
        names = names[: max(0, int(max_clips))]
    if not names:
        raise DatasetError(f"{data}: no clips in split {split or 'all'}")
    keys = list(prompts)
    text = model.encode_texts([prompts[k] for k in keys])
    embedder = FrameEmbedder(model, cache_dir, batch_size)
    rows, failed = [], {}
    for name in progress(names, desc="EchoCLIP screen", unit="clip"):
        try:
            emb = embedder.get(raw_job(ds, name))
        except EchoDFKDError as exc:
            failed[name] = str(exc)
            continue
        sim = similarities(emb, text)
        row: dict[str, Any] = {"FileName": name, "Split": ds.split(name), "frames": int(emb.shape[0]),
                               "fps": float(ds.fps(name))}
        row.update({f"score_{k}": float(sim[:, i].mean()) for i, k in enumerate(keys)})
        rows.append(row)
    if not rows:
        first = next(iter(failed.items()))
        raise DatasetError(f"{data}: no clip could be screened (first: {first[0]}: {first[1]})")
    table = pd.DataFrame(rows)
    for k in keys:
        table[f"rank_{k}"] = table[f"score_{k}"].rank(ascending=False, method="first").astype(int)
    return ScreenResult(table, dict(prompts), failed, embedder.computed_frames)


def extremes(table: pd.DataFrame, prompt: str, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The k clips most and the k least like `prompt` (most first, least last), without overlap."""
    ordered = table.sort_values(f"score_{prompt}", ascending=False, kind="stable")
    if len(ordered) == 1:
        return ordered, ordered.iloc[0:0]
    k = max(0, min(int(k), len(ordered) // 2))
    return ordered.head(k), ordered.iloc[len(ordered) - k:]


def parse_curate(items: Sequence[str], prompts: dict[str, str], n_clips: int) -> dict[str, int]:
    """`NAME:N` or `NAME:P%` items -> clips to flag per prompt (the N highest scores)."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, amount = item.rpartition(":")
        if not sep or name not in prompts:
            raise EchoDFKDError(f"--curate {item!r}: expected NAME:N or NAME:P% with NAME one of "
                                f"{', '.join(prompts)}")
        try:
            count = (round(float(amount[:-1]) / 100 * n_clips) if amount.endswith("%") else int(amount))
        except ValueError:
            raise EchoDFKDError(f"--curate {item!r}: {amount!r} is not a count or a percentage") from None
        if count < 0:
            raise EchoDFKDError(f"--curate {item!r}: the count must be >= 0")
        out[name] = min(count, n_clips)
    return out


def curated_rows(table: pd.DataFrame, counts: dict[str, int], prompts: dict[str, str]) -> list[dict]:
    """Rows `FileName, reason = echoclip_<NAME>, detail` for the top clips of each curated prompt."""
    rows = []
    for name, count in counts.items():
        top = table.sort_values(f"score_{name}", ascending=False, kind="stable").head(count)
        for _, r in top.iterrows():
            rows.append({"FileName": r["FileName"], "reason": f"echoclip_{name}",
                         "detail": f"rank {int(r[f'rank_{name}'])} of {len(table)} for \"{prompts[name]}\" "
                                   f"(mean similarity {r[f'score_{name}']:.4f})"})
    return rows
