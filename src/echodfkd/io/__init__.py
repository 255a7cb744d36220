"""File input/output: videos and atomic writes."""

from echodfkd.io.atomic import atomic_path, load_json, save_json, save_npz, save_text
from echodfkd.io.video import VideoInfo, read_video, resize_frames, resize_masks, video_info, write_video

__all__ = [
    "VideoInfo", "atomic_path", "load_json", "read_video", "resize_frames", "resize_masks",
    "save_json", "save_npz", "save_text", "video_info", "write_video",
]
