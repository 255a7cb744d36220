"""The one cache folder: `$ECHODFKD_CACHE`, else `$XDG_CACHE_HOME/echodfkd`, else `~/.cache/echodfkd`.

Each user keeps a subfolder: `compiled/` (torch.compile engines), `echoclip/` (frame embeddings),
`viewer-examples/` (the viewer's generated clips). `ECHODFKD_CACHE_DIR`, which used to name the
compiled-engine folder itself, is still read (for that folder only) with a one-line deprecation note.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "ECHODFKD_CACHE"
#: Deprecated: named the compiled-engine folder itself (not the cache root).
OLD_COMPILED_ENV = "ECHODFKD_CACHE_DIR"
_warned: set[str] = set()


def cache_root() -> Path:
    """The cache folder every part of echodfkd keeps its subfolder in (module doc)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "echodfkd"


def cache_folder(kind: str) -> Path:
    """`cache_root() / kind`; for "compiled", the deprecated $ECHODFKD_CACHE_DIR when only it is set."""
    old = os.environ.get(OLD_COMPILED_ENV)
    if kind == "compiled" and old and not os.environ.get(CACHE_ENV):
        if OLD_COMPILED_ENV not in _warned:
            _warned.add(OLD_COMPILED_ENV)
            print(f"note: ${OLD_COMPILED_ENV} is deprecated; set ${CACHE_ENV} (the cache root; engines go to "
                  f"its compiled/ subfolder)", file=sys.stderr)
        return Path(old).expanduser()
    return cache_root() / kind
