"""Resumable multi-step jobs (demo, reproduce): each finished step is recorded and skipped on rerun."""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from echodfkd.io.atomic import save_json

STEPS_FILE = "steps.json"


@dataclass
class StepRecord:
    """What one finished step left behind: its summary and how long it took."""

    name: str
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


class StepRunner:
    """Run named steps in order, timing each; a step recorded as done is skipped when rerun."""

    def __init__(self, out: str | Path, echo: Callable[[str], None] | None = None, cascade: bool = False) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.path = self.out / STEPS_FILE
        self.records: dict[str, StepRecord] = {}
        self._upstream_ran = False
        self.cascade = cascade  # a linear chain: once a step runs, every later step's inputs changed
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self.records = {k: StepRecord(k, float(v["seconds"]), v.get("summary", {})) for k, v in raw.items()}
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                self.echo(f"note: {self.path} is unreadable; all steps will run again")

    def run(self, name: str, title: str, fn: Callable[[], dict[str, Any] | None],
            outputs: list[Path] | None = None, folders: list[Path] | None = None) -> dict[str, Any]:
        """Run `fn` as step `name` unless it finished before and its `outputs` still exist.

        With `cascade`, once a step has run in this invocation every later step runs again too (its inputs
        changed); such a step first deletes its `folders`, so nothing stale is resumed from them. A step
        that was merely interrupted keeps its folders and resumes. Without it, callers track dependencies.
        """
        done = self.records.get(name)
        if not self._upstream_ran and done is not None and all(Path(p).exists() for p in outputs or []):
            self.echo(f"[{name}] {title}: done before ({done.seconds:.1f} s), reusing")
            return done.summary
        if self._upstream_ran and done is not None:
            for folder in folders or []:
                shutil.rmtree(folder, ignore_errors=True)
        self._upstream_ran = self.cascade
        self.echo(f"[{name}] {title} ...")
        start = time.perf_counter()
        summary = fn() or {}
        seconds = time.perf_counter() - start
        self.records[name] = StepRecord(name, seconds, summary)
        self._save()
        self.echo(f"[{name}] finished in {seconds:.1f} s")
        return summary

    def skip(self, name: str, reason: str) -> None:
        """Record a step as skipped with the reason (shown in reports)."""
        self.records.pop(name, None)
        self.echo(f"[{name}] skipped: {reason}")

    def timings(self) -> dict[str, float]:
        """Seconds spent in each recorded step (from the run that produced it)."""
        return {k: r.seconds for k, r in self.records.items()}

    def _save(self) -> None:
        save_json(self.path, {k: {"seconds": r.seconds, "summary": r.summary} for k, r in self.records.items()})
