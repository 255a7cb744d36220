"""Resumable multi-step jobs (demo, reproduce): steps declared once with their dependencies, run in order.

A finished step is recorded in OUT/steps.json (`echodfkd.io.records.StepsJournal`) and skipped on rerun
while its outputs exist. When a step runs again, every step that depends on it (directly or not) is
marked stale in the same write: it runs again too, its folders cleared first, even after a crash.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from echodfkd.errors import EchoDFKDError
from echodfkd.io.records import RecordError, StepEntry, StepsJournal

STEPS_FILE = StepsJournal.FILE
Summary = dict[str, Any]


@dataclass(frozen=True)
class Step:
    """One step: its name, title, the steps whose outputs it reads, and the files that prove it finished.

    `folders` are cleared before the step runs again because an input changed (a stale result is never
    resumed); `changed(summary)` says whether a finished run changed the outputs (default: yes), so a
    step that found its work already done does not force its dependents; `then(summary)` is called with
    the summary whether the step ran or was reused.
    """

    name: str
    title: str
    depends_on: tuple[str, ...] = ()
    outputs: tuple[Path, ...] = ()
    folders: tuple[Path, ...] = ()
    fn: Callable[[], Summary | None] | None = field(default=None, compare=False)
    changed: Callable[[Summary], bool] | None = field(default=None, compare=False)
    then: Callable[[Summary], None] | None = field(default=None, compare=False)


def bind(steps: Sequence[Step], functions: Mapping[str, Callable[[], Summary | None]],
         **hooks: Mapping[str, Callable[[Summary], Any]]) -> list[Step]:
    """The declared steps with their functions (and `changed`/`then` hooks) attached, by step name."""
    names = {s.name for s in steps}
    unknown = sorted(set(functions).union(*[set(h) for h in hooks.values()]) - names)
    missing = [s.name for s in steps if s.name not in functions]
    if unknown or missing:
        raise ValueError(f"steps without a function {missing}, functions of undeclared steps {unknown}")
    return [replace(s, fn=functions[s.name], **{k: h[s.name] for k, h in hooks.items() if s.name in h})
            for s in steps]


@dataclass
class StepRecord:
    """What one finished step left behind: its summary and how long it took."""

    name: str
    seconds: float
    summary: Summary = field(default_factory=dict)


def read_journal(out: str | Path) -> StepsJournal | None:
    """OUT/steps.json, or None when it is absent or unreadable (read only; for followers and plans)."""
    try:
        return StepsJournal.read_or_none(Path(out) / STEPS_FILE)
    except (RecordError, OSError):
        return None


class StepRunner:
    """Run declared steps in order, timing each; reuse a recorded step unless it is stale or its outputs vanished."""

    def __init__(self, out: str | Path, echo: Callable[[str], None] | None = None) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.path = self.out / STEPS_FILE
        self._declared: dict[str, Step] = {}
        try:
            self.journal = StepsJournal.read_or_none(self.path) or StepsJournal()
        except RecordError as exc:
            self.echo(f"note: the steps journal is unreadable ({exc}); all steps will run again")
            self.journal = StepsJournal()

    # ------------------------------------------------------------------ queries
    @property
    def records(self) -> dict[str, StepRecord]:
        """Every recorded step (read only: change them through the runner)."""
        return {k: StepRecord(k, e.seconds, e.summary) for k, e in self.journal.steps.items()}

    def done(self, name: str) -> bool:
        """The step is recorded as finished and not stale."""
        return name in self.journal.steps and name not in self.journal.stale

    def summary(self, name: str) -> Summary | None:
        """The recorded summary of a step (None when it has not finished)."""
        entry = self.journal.steps.get(name)
        return None if entry is None else entry.summary

    def timings(self) -> dict[str, float]:
        """Seconds spent in each recorded step (from the run that produced it)."""
        return {k: e.seconds for k, e in self.journal.steps.items()}

    # ------------------------------------------------------------------ running
    def declare(self, steps: Iterable[Step]) -> None:
        """Register steps (in order: each depends only on steps declared before it)."""
        for step in steps:
            unknown = [d for d in step.depends_on if d not in self._declared]
            if unknown:
                raise ValueError(f"step {step.name!r} depends on {unknown}, not declared before it")
            self._declared[step.name] = step

    def run_all(self, steps: Sequence[Step]) -> dict[str, Summary]:
        """Run (or reuse) every step in the declared order; returns each step's summary."""
        self.declare(steps)
        return {step.name: self.run_step(step) for step in steps}

    def run_step(self, step: Step) -> Summary:
        """Run one declared step unless it is recorded, not stale, and its outputs still exist."""
        if step.fn is None:
            raise ValueError(f"step {step.name!r} has no function (see pipeline.bind)")
        if step.name not in self._declared:
            self.declare([step])
        entry = self.journal.steps.get(step.name)
        stale = step.name in self.journal.stale
        if entry is not None and not stale and all(Path(p).exists() for p in step.outputs):
            self.echo(f"[{step.name}] {step.title}: done before ({entry.seconds:.1f} s), reusing")
            return self._then(step, entry.summary)
        if stale:
            for folder in step.folders:
                shutil.rmtree(folder, ignore_errors=True)
        self.echo(f"[{step.name}] {step.title} ...")
        start = time.perf_counter()
        summary = step.fn() or {}
        seconds = time.perf_counter() - start
        self.journal.steps[step.name] = StepEntry(seconds=seconds, summary=summary, depends_on=list(step.depends_on),
                                                  outputs=[self._relative(p) for p in step.outputs])
        self.journal.stale = [s for s in self.journal.stale if s != step.name]
        if step.changed is None or step.changed(summary):
            self._mark_stale(self._dependents(step.name))
        self._save()
        self.echo(f"[{step.name}] finished in {seconds:.1f} s")
        return self._then(step, summary)

    def skip(self, name: str, reason: str) -> None:
        """Record a step as skipped with the reason (shown in reports)."""
        if self.journal.steps.pop(name, None) is not None:
            self._save()
        self.echo(f"[{name}] skipped: {reason}")

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _then(step: Step, summary: Summary) -> Summary:
        if step.then is not None:
            step.then(summary)
        return summary

    def _dependents(self, name: str) -> list[str]:
        """Steps that read `name`'s outputs, directly or through others: declared now, or recorded before."""
        graph = {n: set(s.depends_on) for n, s in self._declared.items()}
        for n, e in self.journal.steps.items():
            graph.setdefault(n, set()).update(e.depends_on or ())
        found: list[str] = []
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for n, deps in graph.items():
                if current in deps and n not in found and n != name:
                    found.append(n)
                    frontier.append(n)
        return found

    def _mark_stale(self, names: list[str]) -> None:
        self.journal.stale = sorted(set(self.journal.stale) | {n for n in names if n in self.journal.steps or
                                                               n in self._declared})
        for n in names:
            self.journal.steps.pop(n, None)

    def _relative(self, path: Path) -> str:
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.out.resolve()))
        except ValueError:
            return str(path)

    def _save(self) -> None:
        try:
            self.journal.write(self.path)
        except OSError as exc:
            raise EchoDFKDError(f"{self.path}: cannot record the finished step ({exc.strerror or exc})") from None
