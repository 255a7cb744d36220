"""`echodfkd check-run DIR`: validate every record of a run, demo or reproduce folder (one line each)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

NAME = "check-run"
HELP = "validate the records of a run/demo/reproduce folder: config.json, meta.json, metrics.json, steps.json"
DESCRIPTION = (
    "Walks DIR and reads every config.json, meta.json, metrics.json and steps.json with its typed reader: "
    "format, version and the type of every field, then the files each refers to (model.safetensors beside "
    "a run's config.json and its recorded SHA-256, the tables of finished predictions, the figures of an "
    "evaluation, the outputs of every finished step). Prints one line per record, OK or the problem; "
    "exit 1 when any record has a problem. Formats: docs/formats.md."
)
RECORD_NAMES = ("config.json", "meta.json", "metrics.json", "steps.json")
#: Folders that hold no records of ours (caches, Lightning's logs and checkpoints).
SKIP_DIRS = {"cache", "logs", "checkpoints", "__pycache__"}


@dataclass
class Finding:
    """One record: where it is, what it is, and its problem (None when it is fine)."""

    path: str
    format: str | None
    version: int | None
    problem: str | None = None
    note: str | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    parser.add_argument("dir", metavar="DIR", help="a student run, predictions, evaluation, demo or reproduce folder")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON instead of lines")
    parser.add_argument("--teacher-hash", action="store_true",
                        help="also load each teacher checkpoint a targets meta.json names (when it is still there) "
                             "and compare its weights with the recorded weights_hash (slower)")


def find_records(root: Path) -> list[Path]:
    """Every record file under `root` (itself included when it is one), in a stable order."""
    if root.is_file():
        return [root] if root.name in RECORD_NAMES else []
    found = [p for name in RECORD_NAMES for p in root.rglob(name)
             if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])]
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


def check_record(path: Path, teacher_hash: bool = False) -> Finding:
    """Read one record with its typed reader, then check the files it refers to."""
    from echodfkd.io import records as rec

    try:
        if path.name == "config.json":
            record: rec.Record = rec.StudentConfig.read(path)
            problem = _check_config(path, record)
        elif path.name == "meta.json":
            record = rec.read_folder_meta(path.parent)
            problem = (_check_predictions(path, record) if isinstance(record, rec.PredictionsMeta)
                       else _check_teachers(record) if teacher_hash and record is not None else None)
        elif path.name == "metrics.json":
            record = rec.metrics_record(path).read(path)
            problem = _check_links(path, record)
        else:
            record = rec.StepsJournal.read(path)
            problem = _check_steps(path, record)
    except rec.RecordError as exc:
        return Finding(str(path), None, None, str(exc).removeprefix(f"{path}: "))
    note = f"{len(record.stale)} stale step(s) to rerun" if isinstance(record, rec.StepsJournal) and record.stale \
        else ("written before records had a version" if record.version == 0 else None)
    return Finding(str(path), record.FORMAT, record.version, problem, note)


def _check_config(path: Path, cfg) -> str | None:  # noqa: ANN001 - a StudentConfig
    from echodfkd.io.records import file_sha256

    if (path.parent / "meta.json").is_file():  # a copy beside predictions: the weights stay in the run
        return None
    weights = path.parent / cfg.WEIGHTS
    if cfg.status == "training":
        return None
    if not weights.is_file():
        return f"{weights.name} is missing beside it (status {cfg.status or 'unrecorded'})"
    if cfg.weights_sha256 and file_sha256(weights) != cfg.weights_sha256:
        return f"{weights.name} does not match the SHA-256 recorded in weights_sha256"
    return None


def _check_predictions(path: Path, meta) -> str | None:  # noqa: ANN001 - a PredictionsMeta
    if meta.status != "done":
        return None
    missing = [n for n in ("areas.csv", "phases.json", "alerts.csv") if not (path.parent / n).is_file()]
    return f"status done but {', '.join(missing)} missing" if missing else None


def _check_teachers(meta) -> str | None:  # noqa: ANN001 - a TargetsMeta
    """Each channel's teacher checkpoint, where it still exists, has the weights the record names."""
    from echodfkd.teacher.model import load_teacher, weights_hash

    for channel, teacher in (meta.channels or {}).items():
        source = Path(str(teacher.get("source") or ""))
        if teacher.get("source") and source.is_file() and teacher.get("weights_hash"):
            found = weights_hash(load_teacher(source, arch=teacher.get("arch")))
            if found != teacher["weights_hash"]:
                return f"channel {channel}: {source} no longer has the weights recorded in weights_hash"
    return None


def _check_links(path: Path, metrics) -> str | None:  # noqa: ANN001 - an evaluation/demo/reproduce record
    links = list(getattr(metrics, "figures", None) or [])
    links += list((getattr(metrics, "reports", None) or {}).values())
    missing = [f for f in links if not (path.parent / f).exists()]
    return f"{len(missing)} listed file(s) missing, first {missing[0]}" if missing else None


def _check_steps(path: Path, journal) -> str | None:  # noqa: ANN001 - a StepsJournal
    for name, entry in journal.steps.items():
        missing = [o for o in entry.outputs or [] if not (path.parent / o).exists()]
        if missing:
            return f"step {name} is recorded as finished but its output {missing[0]} is missing"
    return None


def run(args: argparse.Namespace) -> int:
    """Check every record under DIR; one line each; exit 1 on any problem."""
    from echodfkd.errors import EchoDFKDError

    root = Path(args.dir)
    if not root.exists():
        raise EchoDFKDError(f"{root}: not found")
    paths = find_records(root)
    if not paths:
        raise EchoDFKDError(f"{root}: no config.json, meta.json, metrics.json or steps.json found")
    findings = [check_record(p, args.teacher_hash) for p in paths]
    if args.json:
        print(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        for f in findings:
            if f.problem:
                print(f"PROBLEM  {f.path}: {f.problem}")
            else:
                print(f"OK       {f.path} ({f.format} v{f.version}{'; ' + f.note if f.note else ''})")
    bad = sum(f.problem is not None for f in findings)
    if not args.json:
        print(f"{len(findings)} record(s), {bad} with a problem")
    return 1 if bad else 0
