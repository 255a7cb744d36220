"""Typed records between steps: a student's config.json, a folder's meta.json, metrics.json, steps.json.

Each record is a dataclass with a `format` name and a `version`; it has one reader (`Record.read`) and
one writer (`record.write`, atomic). Reading validates every typed field and fails with one line naming
the file and the field (`RUN/config.json: blocks must be an integer, got 'four'`). Keys a record does not
type are kept as they are (`extra`) and written back, so the on-disk keys stay those of older releases.
A file without `format`/`version` (written before records existed) is read as version 0 and migrated
in memory; a newer version than this release knows is refused.
"""

from echodfkd.io.records.base import Fields, Record, RecordError, file_sha256
from echodfkd.io.records.kinds import (ARCH_FIELDS, RECORDS, CamusMetrics, DemoMetrics, EvaluationMetrics, PredictionsMeta,
                                       ReproduceMetrics, StepEntry, StepsJournal, StreamDefaults, StudentConfig,
                                       TargetsMeta, Thresholds, TrainingSummary, metrics_record, overall,
                                       read_folder_meta)

__all__ = ["ARCH_FIELDS", "RECORDS", "CamusMetrics", "DemoMetrics", "EvaluationMetrics", "Fields", "PredictionsMeta", "Record",
           "RecordError", "ReproduceMetrics", "StepEntry", "StepsJournal", "StreamDefaults", "StudentConfig",
           "TargetsMeta", "Thresholds", "TrainingSummary", "file_sha256", "metrics_record", "overall",
           "read_folder_meta"]
