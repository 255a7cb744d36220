"""Two annotation rounds from CSV files -> the noise bounds of each annotated quantity (supp. §2).

A round is a CSV with one row per clip: a key column `FileName` (or `id`) and one column per quantity,
e.g. `FileName,ED,ES` (frame labels, integers) or `FileName,EF` (a measurement). The two rounds are
matched by key; every numeric column present in both is compared (or the ones asked for). A blank cell
leaves that clip out of that column only. For each quantity: RMSE between rounds and its √2 floor,
Pearson ρ and its √ρ ceiling; for integer columns (frame labels) also the Laplace+uniform fit of the
differences Z1 − Z2 with the "laplace-difference" kernel, so that b is one annotator's E|X| (the paper's
2.4 frames at ED, 2.0 at ES).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from echodfkd.errors import DatasetError
from echodfkd.evaluate.noise import annotator_noise_bounds, fit_or_reason

KEYS = ("FileName", "id")
MIN_PAIRS = 3


def read_round(path: str | os.PathLike) -> pd.DataFrame:
    """One round: a DataFrame indexed by clip key, numeric columns only; one-line errors for bad files."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation round not found") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a folder; an annotation round is a CSV file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    df.columns = [c.strip() for c in df.columns]
    key = next((k for k in KEYS if k in df.columns), None)
    if key is None:
        raise DatasetError(f"{path}: needs a key column {' or '.join(KEYS)}, has {list(df.columns)}")
    ids = df[key].str.strip().str.removesuffix(".avi")
    if (ids == "").any():
        raise DatasetError(f"{path}: row {int(np.argmax(ids == '')) + 2} has an empty {key}")
    dup = ids[ids.duplicated()]
    if not dup.empty:
        raise DatasetError(f"{path}: {key} {dup.iloc[0]!r} appears more than once")
    values = df.drop(columns=[key])
    if values.empty or not len(values.columns):
        raise DatasetError(f"{path}: no value column beside {key}")
    out = {}
    for col in values.columns:
        text = values[col].str.strip()
        num = pd.to_numeric(text.replace("", np.nan), errors="coerce")
        bad = num.isna() & (text != "")
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise DatasetError(f"{path}: column {col!r}, row {row + 2} ({ids.iloc[row]}): "
                               f"{text.iloc[row]!r} is not a number")
        out[col] = num.to_numpy(dtype=np.float64)
    frame = pd.DataFrame(out, index=pd.Index(ids, name="FileName"))
    if not np.isfinite(frame.to_numpy()).any():
        raise DatasetError(f"{path}: no numeric value in any column")
    return frame


def compare_rounds(round1: pd.DataFrame, round2: pd.DataFrame, columns: Sequence[str] | None = None,
                   names: tuple[str, str] = ("round 1", "round 2")) -> dict:
    """Per quantity: n, RMSE, floor, ρ, ceiling, bias and (integer columns) the Laplace+uniform fit."""
    shared = [c for c in round1.columns if c in round2.columns]
    if columns:
        missing = [c for c in columns if c not in shared]
        if missing:
            raise DatasetError(f"column {missing[0]!r} is not in both rounds (shared: {shared or 'none'})")
        shared = list(columns)
    if not shared:
        raise DatasetError(f"{names[0]} and {names[1]} share no value column "
                           f"({list(round1.columns)} vs {list(round2.columns)})")
    common = round1.index.intersection(round2.index)
    result = {"clips_matched": int(len(common)), "only_in_round1": int(len(round1.index.difference(round2.index))),
              "only_in_round2": int(len(round2.index.difference(round1.index))), "quantities": {}}
    if len(common) < MIN_PAIRS:
        raise DatasetError(f"{names[0]} and {names[1]} have {len(common)} clip(s) in common; "
                           f"the noise bounds need at least {MIN_PAIRS}")
    for col in shared:
        z1 = round1.loc[common, col].to_numpy()
        z2 = round2.loc[common, col].to_numpy()
        ok = np.isfinite(z1) & np.isfinite(z2)
        z1, z2 = z1[ok], z2[ok]
        q: dict = {"n": int(ok.sum()), "blank": int((~ok).sum())}
        if q["n"] < MIN_PAIRS:
            q["left_out"] = f"{q['n']} clip(s) with a value in both rounds; needs {MIN_PAIRS}"
            result["quantities"][col] = q
            continue
        q.update(annotator_noise_bounds(z1, z2))
        q["bias"] = float(np.mean(z1 - z2))
        integer = bool(np.all(z1 == np.round(z1)) and np.all(z2 == np.round(z2)))
        q["kind"] = "frame labels (integers)" if integer else "measurement"
        if integer:
            q["fit"] = fit_or_reason(z1 - z2, kernel="laplace-difference")
        result["quantities"][col] = q
    return result


def differences(round1: pd.DataFrame, round2: pd.DataFrame, column: str) -> np.ndarray:
    """Z1 − Z2 of one column over the clips with a value in both rounds."""
    common = round1.index.intersection(round2.index)
    d = round1.loc[common, column].to_numpy() - round2.loc[common, column].to_numpy()
    return d[np.isfinite(d)]
