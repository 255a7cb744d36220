"""Error types: every user-facing failure is an EchoDFKDError with a one-line message."""


class EchoDFKDError(Exception):
    """Base class for errors the CLI reports as one line (no traceback)."""


class VideoError(EchoDFKDError):
    """A video file cannot be read or written (names the file)."""


class DatasetError(EchoDFKDError):
    """A dataset folder or one of its tables is missing or malformed."""


class ModelError(EchoDFKDError):
    """A checkpoint or model directory cannot be loaded."""


class SignalError(EchoDFKDError):
    """A per-frame signal (mask areas, user CSV) is empty, non-finite or malformed."""
