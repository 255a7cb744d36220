"""Progress bars shared by long-running steps (tqdm on stderr; quiet when asked)."""

from __future__ import annotations

import os
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
             disable: bool | None = None) -> Iterator[T]:
    """Wrap an iterable in a progress bar; ECHODFKD_QUIET=1 silences all bars."""
    if disable is None:
        disable = os.environ.get("ECHODFKD_QUIET") == "1"
    return iter(tqdm(items, desc=desc, total=total, unit=unit, disable=disable, dynamic_ncols=True))
