"""EchoNet-layout dataset folders: `FileList.csv`, `Videos/<FileName>.avi`, optional `GroundTruth/`.

The base class loads and validates the FileList; `EchoNetDynamic` adds tracings and `EchoNetSynthetic`
takes sizes and frame rates from the videos themselves.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from echodfkd.errors import DatasetError
from echodfkd.io.video import VideoInfo, read_video, video_info

SPLITS = ("TRAIN", "VAL", "TEST")
FILELIST = "FileList.csv"
VIDEOS = "Videos"
GROUND_TRUTH = "GroundTruth"


def read_table(path: Path, what: str) -> pd.DataFrame:
    """Read a CSV (numbers parsed natively, only empty cells missing), parser failures -> DatasetError."""
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found")
    try:
        table = pd.read_csv(path, keep_default_na=False, na_values=[""], encoding="utf-8-sig",
                            skipinitialspace=True, dtype={"FileName": str, "Split": str})
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: {what} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(f"{path}: {what} is not a readable CSV ({first})") from None
    table.columns = [str(c).strip() for c in table.columns]
    return table


def require_columns(table: pd.DataFrame, required: tuple[str, ...], path: Path) -> None:
    """Raise a DatasetError listing the required columns a table lacks."""
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)} "
                           f"(found: {', '.join(map(str, table.columns)) or 'none'})")


def numeric_column(table: pd.DataFrame, column: str, path: Path, integer: bool = False,
                   strict: bool = True, allow_empty: bool = False, positive: bool = False) -> pd.Series:
    """Parse a column as numbers; garbage raises (strict, naming the CSV line) or becomes NaN (lenient).

    With `positive`, values <= 0 count as garbage too (a frame rate or a size).
    With `allow_empty`, empty cells become NaN even when strict (e.g. EF of unlabelled converted clips).
    """
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    array = values.to_numpy()
    bad = ~np.isfinite(array)
    if allow_empty:
        bad &= ~raw.isna().to_numpy()
    if integer:
        bad |= np.isfinite(array) & (array != np.round(array))
    if positive:
        bad |= np.isfinite(array) & (array <= 0)
    if strict and bad.any():
        row = int(np.flatnonzero(bad)[0])
        text = raw.iloc[row]
        text = "an empty cell" if pd.isna(text) else repr(str(text).strip())
        more = f" ({int(bad.sum())} bad rows in this column)" if bad.sum() > 1 else ""
        raise DatasetError(f"{path} line {row + 2}: column {column} holds {text}, "
                           f"not {'a positive ' if positive else 'a' + ('n' if integer else '') + ' '}"
                           f"{'integer' if integer else 'number'}{more}")
    return values.where(~bad)


def strip_avi(name: str) -> str:
    """A clip name without a trailing `.avi` (VolumeTracings and some FileLists include it)."""
    name = name.strip()
    return name[:-4] if name.lower().endswith(".avi") else name


def strip_avi_column(names: pd.Series) -> pd.Series:
    """`strip_avi` over a column of clip names (missing cells become empty names)."""
    text = names.fillna("").astype(str).str.strip()
    return text.str.replace(r"\.avi$", "", case=False, regex=True)


class DatasetFolder:
    """A folder in the EchoNet layout: FileList.csv, Videos/<FileName>.avi, optional GroundTruth/."""

    #: Columns the FileList must have.
    REQUIRED: tuple[str, ...] = ("FileName", "Split")
    #: Numeric columns whose values must parse when present (name -> integer?).
    NUMERIC: dict[str, bool] = {"EF": False, "ESV": False, "EDV": False}
    #: Numeric columns parsed leniently (garbage becomes NaN) because some releases get them wrong.
    LENIENT: dict[str, bool] = {}
    #: NUMERIC columns whose cells may be left empty (NaN).
    BLANK_OK: tuple[str, ...] = ()
    #: NUMERIC columns that must be > 0 (frame rates and sizes).
    POSITIVE: tuple[str, ...] = ()
    has_tracings = False

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.exists():
            raise DatasetError(f"{self.root}: dataset folder not found")
        if not self.root.is_dir():
            hint = " (unzip it first)" if zipfile.is_zipfile(self.root) else ""
            raise DatasetError(f"{self.root}: not a folder{hint}")
        self.filelist_path = self.root / FILELIST
        if not self.filelist_path.is_file():
            raise DatasetError(f"{self.root}: no {FILELIST} (expected an EchoNet-layout folder with "
                               f"{FILELIST} and {VIDEOS}/)")
        #: The FileList as loaded and validated (treat as read-only).
        self.filelist = self._load_filelist()
        self._index = {n: i for i, n in enumerate(self.filelist["FileName"])}
        self._records = self.filelist.to_dict("records")  # row lookups without pandas overhead

    # ------------------------------------------------------------------ FileList
    def _load_filelist(self) -> pd.DataFrame:
        path = self.filelist_path
        table = read_table(path, FILELIST)
        require_columns(table, self.REQUIRED, path)
        if table.empty:
            raise DatasetError(f"{path}: has a header but no rows")
        names = strip_avi_column(table["FileName"])
        empty = np.flatnonzero((names == "").to_numpy())
        if len(empty):
            raise DatasetError(f"{path} line {empty[0] + 2}: empty FileName")
        dup = names[names.duplicated()]
        if len(dup):
            raise DatasetError(f"{path} line {dup.index[0] + 2}: FileName {dup.iloc[0]} appears twice")
        table["FileName"] = names
        split = table["Split"].fillna("").astype(str).str.strip().str.upper()
        wrong = np.flatnonzero(~split.isin(SPLITS).to_numpy())
        if len(wrong):
            row = wrong[0]
            raise DatasetError(f"{path} line {row + 2}: Split is {table['Split'].iloc[row]!r}, "
                               f"expected one of {', '.join(SPLITS)}")
        table["Split"] = split
        for column, integer in self.NUMERIC.items():
            if column in table.columns:
                table[column] = numeric_column(table, column, path, integer=integer,
                                               allow_empty=column in self.BLANK_OK,
                                               positive=column in self.POSITIVE)
        for column, integer in self.LENIENT.items():
            if column in table.columns:
                table[column] = numeric_column(table, column, path, integer=integer, strict=False)
        return table.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.filelist)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and strip_avi(name) in self._index

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, videos={len(self)})"

    def _key(self, name: str) -> str:
        """The FileList name of a clip (`.avi` stripped); unknown clips raise a DatasetError."""
        key = strip_avi(name)
        if key not in self._index:
            raise DatasetError(f"{self.filelist_path}: no clip named {key!r}")
        return key

    def _row(self, name: str) -> dict:
        return self._records[self._index[self._key(name)]]

    @staticmethod
    def parse_splits(split: str | None) -> tuple[str, ...]:
        """Normalise a split argument ('TRAIN', 'val', 'TRAIN,VAL', 'all' or None) to split names."""
        if split is None or split.strip().lower() in ("", "all"):
            return SPLITS
        wanted = tuple(s.strip().upper() for s in split.split(",") if s.strip())
        unknown = [s for s in wanted if s not in SPLITS]
        if unknown or not wanted:
            raise DatasetError(f"unknown split {split!r}: use TRAIN, VAL, TEST, a comma list or all")
        return wanted

    def names(self, split: str | None = None) -> list[str]:
        """Clip names (FileList order) of one split, a comma list of splits, or all when None."""
        wanted = self.parse_splits(split)
        mask = self.filelist["Split"].isin(wanted)
        return self.filelist.loc[mask, "FileName"].tolist()

    def split(self, name: str) -> str:
        """The split (TRAIN/VAL/TEST) a clip belongs to."""
        return str(self._row(name)["Split"])

    def ef(self, name: str) -> float:
        """The clip's ejection fraction from the FileList (NaN when the column is absent)."""
        row = self._row(name)
        return float(row["EF"]) if "EF" in row else float("nan")

    # ------------------------------------------------------------------ videos
    @property
    def videos_dir(self) -> Path:
        """The `Videos/` folder."""
        return self.root / VIDEOS

    def video_path(self, name: str) -> Path:
        """Path of a clip's AVI (it may not exist)."""
        return self.videos_dir / f"{strip_avi(name)}.avi"

    def info(self, name: str) -> VideoInfo:
        """Frame count, size and FPS of a clip (subclasses decide the source of truth)."""
        return video_info(self.video_path(name))

    def fps(self, name: str) -> float:
        """Frame rate of a clip."""
        return self.info(name).fps

    def _fps_for(self, name: str, header_fps: float) -> float:
        """The frame rate `video()` returns, given the rate the AVI header declared."""
        return header_fps

    def video(self, name: str) -> tuple[np.ndarray, float]:
        """Decode a clip to uint8 grayscale (T, H, W) and return it with its frame rate."""
        frames, header_fps = read_video(self.video_path(name))
        return frames, self._fps_for(name, header_fps)

    # ------------------------------------------------------------------ phantom ground truth
    @property
    def has_ground_truth(self) -> bool:
        """Whether the folder carries exact per-frame ground truth (phantom datasets)."""
        return (self.root / GROUND_TRUTH).is_dir()

    def ground_truth(self, name: str) -> dict[str, np.ndarray] | None:
        """Phantom ground truth of a clip (`lv`, `rv`, `ed`, `es`, `ef`), or None when absent."""
        path = self.root / GROUND_TRUTH / f"{strip_avi(name)}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise DatasetError(f"{path}: unreadable ground truth ({exc})") from None
