"""Browser viewer (`echodfkd serve`): upload a clip, watch the student's mask, the area curve, ED/ES, EF and the alert.

Needs the optional extra: `pip install echodfkd[viewer]`.
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any) -> Any:
    """Build the viewer's FastAPI app (see `echodfkd.viewer.app.create_app`)."""
    try:
        from echodfkd.viewer.app import create_app as _create
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in {"fastapi", "starlette", "uvicorn", "multipart", "python_multipart"}:
            raise
        from echodfkd.errors import EchoDFKDError
        raise EchoDFKDError(f"the viewer needs its optional extra: pip install 'echodfkd[viewer]' ({exc})") from None
    return _create(*args, **kwargs)


__all__ = ["create_app"]
