"""Resumable dataset checks: the findings of each clip, appended to a JSON-lines journal as it finishes.

A rerun after an interruption reads the journal and decodes only the clips it lacks. An entry counts
only while its video keeps the same size and modification time and the check thresholds are the same,
so an edited or replaced video, or other thresholds, are checked again. A line cut short by a kill is
ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from echodfkd.data.video_checks import CheckConfig, VideoFindings
from echodfkd.io.atomic import atomic_path


def journal_path(csv: str | os.PathLike) -> Path:
    """The journal kept beside a check's output CSV while it runs (CSV.progress.jsonl)."""
    return Path(str(csv) + ".progress.jsonl")


def video_stamp(path: str | os.PathLike) -> list[int] | None:
    """[size, mtime_ns] of a file, or None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [int(st.st_size), int(st.st_mtime_ns)]


class FindingsJournal:
    """Per-clip findings kept on disk while `check_dataset` runs (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, config: CheckConfig) -> None:
        self.path = Path(path)
        self.config = asdict(config)
        self._entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    if entry.get("config") == self.config and isinstance(entry.get("name"), str):
                        self._entries[entry["name"]] = entry
                except (json.JSONDecodeError, AttributeError):
                    continue  # a line cut short by an interruption
        # Rewrite the journal with only the entries that still apply, then append to it.
        with atomic_path(self.path, suffix=".jsonl") as tmp:
            tmp.write_text("".join(json.dumps(e) + "\n" for e in self._entries.values()))
        self._fh = open(self.path, "a")

    def lookup(self, name: str, video: str | os.PathLike) -> VideoFindings | None:
        """The recorded findings for this clip if its video is unchanged, else None."""
        entry = self._entries.get(name)
        if entry is None or entry.get("stamp") != video_stamp(video):
            return None
        shape = tuple(entry["shape"]) if entry.get("shape") else None
        return VideoFindings(name, shape, [tuple(p) for p in entry.get("problems", [])])

    def record(self, found: VideoFindings, video: str | os.PathLike) -> None:
        """Append one clip's findings (flushed at once, so a kill loses at most this line)."""
        entry = {"name": found.name, "stamp": video_stamp(video), "config": self.config,
                 "shape": list(found.shape) if found.shape else None, "problems": [list(p) for p in found.problems]}
        self._entries[found.name] = entry
        self._fh.write(json.dumps(entry) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Close the journal file (the caller removes it once the check's results are written)."""
        self._fh.close()
