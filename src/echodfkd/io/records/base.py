"""Typed JSON records: field validation from type hints, format/version, one reader and one atomic writer."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

from echodfkd.errors import DatasetError, ModelError
from echodfkd.io.atomic import save_json
from echodfkd.io.digest import file_sha256  # noqa: F401  (re-exported: config.json weights_sha256)

R = TypeVar("R", bound="Record")


class RecordError(ModelError, DatasetError):
    """A record file is unreadable, of another format or version, or has a field of the wrong type."""


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a JSON object",
          list: "a list"}


def _where(path: Path | None) -> str:
    return f"{path}: " if path is not None else ""


def _fail(path: Path | None, key: str, want: str, value: Any) -> RecordError:
    return RecordError(f"{_where(path)}{key} must be {want}, got {value!r}")


def _scalar(value: Any, kind: type, key: str, path: Path | None) -> Any:
    """`value` as `kind`, or a RecordError (bool is not an int; an int is a valid float; NaN is refused)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # numpy scalars from the writers
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _fail(path, key, "a finite number", value)
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise _fail(path, key, _NAMES.get(kind, kind.__name__), value)


def _convert(value: Any, hint: Any, key: str, path: Path | None) -> Any:
    """Validate (and convert) one JSON value against a type hint of a record field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key, path)
    if isinstance(hint, type) and issubclass(hint, Fields):
        if not isinstance(value, dict):
            raise _fail(path, key, _NAMES[dict], value)
        return hint.from_dict(value, path, prefix=f"{key}.")
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(path, key, _NAMES[dict], value)
        kind = args[1] if len(args) == 2 else Any
        return {k: v if kind is Any else _convert(v, kind, f"{key}.{k}", path) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise _fail(path, key, _NAMES[list], value)
        kind = args[0] if args else Any
        return [v if kind is Any else _convert(v, kind, f"{key}[{i}]", path) for i, v in enumerate(value)]
    if hint is Any:
        return value
    if hint is dict or hint is list:
        if not isinstance(value, hint):
            raise _fail(path, key, _NAMES[hint], value)
        return value
    return _scalar(value, hint, key, path)


@dataclass
class Fields:
    """Typed fields read from a JSON object; keys without a field are kept in `extra`."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    #: Fields written as null when None (the others are left out, as older releases did).
    KEEP_NULL: ClassVar[tuple[str, ...]] = ()
    #: field -> (lowest, highest) allowed value (None: unbounded on that side).
    RANGES: ClassVar[dict[str, tuple[float | None, float | None]]] = {}
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        return {k: v for k, v in _hints(cls).items() if k not in ("extra", "version")}

    @classmethod
    def from_dict(cls: type[Any], data: dict[str, Any], path: Path | None = None, prefix: str = "") -> Any:
        """Validate `data` against the fields (one-line RecordError naming `path` and the field)."""
        hints = cls._hints()
        for name in cls.REQUIRED:
            if data.get(name) is None:
                raise RecordError(f"{_where(path)}{prefix}{name} is missing")
        values: dict[str, Any] = {}
        for name, hint in hints.items():
            if name in data:
                values[name] = _convert(data[name], hint, prefix + name, path)
                low, high = cls.RANGES.get(name, (None, None))
                v = values[name]
                if v is not None and ((low is not None and v < low) or (high is not None and v > high)):
                    bounds = (f"in [{low:g}, {high:g}]" if low is not None and high is not None
                              else f">= {low:g}" if low is not None else f"<= {high:g}")
                    raise _fail(path, prefix + name, f"a number {bounds}", data[name])
        extra = {k: v for k, v in data.items() if k not in hints and k not in ("format", "version")}
        return cls(extra=extra, **values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (typed fields, then the untyped keys kept from the file)."""
        out: dict[str, Any] = {}
        for name in self._hints():
            value = getattr(self, name)
            if value is None and name not in self.KEEP_NULL:
                continue
            out[name] = _plain(value)
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out


def _plain(value: Any) -> Any:
    """A field's value as JSON-ready data (nested records become objects)."""
    if isinstance(value, Fields):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        module = sys.modules[cls.__module__].__dict__
        hints = typing.get_type_hints(cls, globalns=module)
        _HINTS[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _HINTS[cls]


@dataclass
class Record(Fields):
    """A file with a `format` and a `version`: one reader (`read`) and one writer (`write`)."""

    version: int = 0
    FORMAT: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = ""
    #: Other format names this record accepts (spellings of earlier releases).
    ALIASES: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def location(cls, path: str | os.PathLike) -> Path:
        """The file itself, given the file or the folder that holds it."""
        path = Path(path)
        return path / cls.FILE if path.is_dir() else path

    @classmethod
    def parse(cls: type[R], data: Any, path: Path | None = None) -> R:
        """A record from a parsed JSON value (checks format and version, migrates version 0)."""
        if not isinstance(data, dict):
            raise RecordError(f"{_where(path)}expected a JSON object ({cls.FORMAT}), got {type(data).__name__}")
        fmt, version = data.get("format"), data.get("version", 0 if "format" not in data else None)
        if fmt is not None and fmt != cls.FORMAT and fmt not in cls.ALIASES:
            raise RecordError(f"{_where(path)}format is {fmt!r}, expected {cls.FORMAT!r}")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise _fail(path, "version", "a non-negative integer", version)
        if version > cls.VERSION:
            raise RecordError(f"{_where(path)}version {version} of {cls.FORMAT} is newer than this release reads "
                              f"(up to {cls.VERSION}); upgrade echodfkd")
        record = cls.from_dict(cls.migrate(dict(data), version), path)
        record.version = version
        return record

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Bring an older version's object to the current layout (in memory; version 0 is the same here)."""
        return data

    @classmethod
    def read(cls: type[R], path: str | os.PathLike) -> R:
        """Read and validate the record at `path` (the file, or the folder holding `FILE`)."""
        path = cls.location(path)
        if not path.is_file():
            raise RecordError(f"{path}: missing")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RecordError(f"{path}: not valid JSON ({exc})") from None
        except OSError as exc:
            raise RecordError(f"{path}: unreadable ({exc.strerror or exc})") from None
        return cls.parse(data, path)

    @classmethod
    def read_or_none(cls: type[R], path: str | os.PathLike) -> R | None:
        """`read`, or None when the file does not exist."""
        return cls.read(path) if cls.location(path).is_file() else None

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object, stamped with this release's format and version."""
        return {"format": self.FORMAT, "version": self.VERSION, **super().to_dict()}

    def write(self, path: str | os.PathLike) -> Path:
        """Write atomically (the file, or `FILE` inside a folder that exists)."""
        return save_json(self.location(path), self.to_dict())


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise RecordError(f"{path}: unreadable ({exc.strerror or exc})") from None
