"""EchoNet-Synthetic folders: the EchoNet layout without tracings; sizes and rates come from the videos.

The public EchoNet-Synthetic release (Reynaud et al., 2024) has FileList columns that are wrong
(FrameHeight/FrameWidth/NumberOfFrames) and AVI headers that declare 30 fps although the clips were
generated at 32 fps. This reader therefore ignores the FileList's size/FPS columns, reads the header,
and lets you state the true rate: `EchoNetSynthetic(root, fps_override=32)` for that release.
"""

from __future__ import annotations

import os

from echodfkd.data.folder import DatasetFolder, strip_avi
from echodfkd.errors import DatasetError
from echodfkd.io.video import VideoInfo, video_info

#: The true frame rate of the public EchoNet-Synthetic release (its AVI headers say 30).
ECHONET_SYNTHETIC_FPS = 32.0


class EchoNetSynthetic(DatasetFolder):
    """EchoNet-layout folder without tracings (EchoNet-Synthetic, style="synthetic" phantoms)."""

    REQUIRED = ("FileName", "Split")
    NUMERIC = {"EF": False}
    BLANK_OK = ("EF",)  # `echodfkd convert` writes unlabelled clips with EF blank
    # Known to be wrong in the public release: kept for reference, never trusted.
    LENIENT = {"ESV": False, "EDV": False, "FrameHeight": False, "FrameWidth": False, "FPS": False,
               "NumberOfFrames": False}
    has_tracings = False

    def __init__(self, root: str | os.PathLike, fps_override: float | None = None):
        super().__init__(root)
        if fps_override is not None and not fps_override > 0:
            raise DatasetError(f"--fps must be a positive frame rate, got {fps_override!r}")
        #: Frame rate to report instead of the AVI header's (e.g. 32 for EchoNet-Synthetic).
        self.fps_override = None if fps_override is None else float(fps_override)
        #: Always empty: synthetic folders have no tracings to miss.
        self.untraced: list[str] = []
        self._info: dict[str, VideoInfo] = {}

    def info(self, name: str) -> VideoInfo:
        """Frame count, size and FPS read from the AVI header (FPS replaced by `fps_override`)."""
        key = strip_avi(name)
        if key not in self._info:
            header = video_info(self.video_path(key))
            fps = self.fps_override if self.fps_override is not None else header.fps
            self._info[key] = VideoInfo(header.frames, header.height, header.width, fps)
        return self._info[key]

    def fps(self, name: str) -> float:
        """Frame rate: `fps_override` when given, else the AVI header's."""
        if self.fps_override is not None:
            return self.fps_override
        return self.info(name).fps

    def _fps_for(self, name: str, header_fps: float) -> float:
        return self.fps_override if self.fps_override is not None else header_fps
