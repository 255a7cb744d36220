"""Pack a clip and its masks for the browser: sprite sheets as PNG data URLs (no video codec needed).

The page draws frame `t` by copying tile `t` of the frame sheet onto a canvas, then the matching tile of
the mask sheet (0 = outside, 128 = inside, 255 = boundary) coloured and half transparent on top.
"""

from __future__ import annotations

import base64
import math

import cv2
import numpy as np
from scipy import ndimage

from echodfkd.io.video import resize_frames, resize_masks

MAX_SIDE = 320            # display tiles never larger than this (pixels)
MAX_SHEET_PIXELS = 16e6   # keeps every sheet (and the page's memory) well inside browser limits
MAX_SHEET_SIDE = 16000


def display_size(frames: int, height: int, width: int) -> tuple[int, int]:
    """Tile (height, width) for the browser: at most MAX_SIDE, and a sheet within the pixel budget."""
    scale = min(1.0, MAX_SIDE / max(height, width), math.sqrt(MAX_SHEET_PIXELS / (frames * height * width)))
    h, w = max(8, int(round(height * scale))), max(8, int(round(width * scale)))
    while True:  # also keep each side of the sheet under the canvas limit
        cols = sheet_columns(frames, h, w)
        rows = math.ceil(frames / cols)
        if cols * w <= MAX_SHEET_SIDE and rows * h <= MAX_SHEET_SIDE:
            return h, w
        h, w = max(8, int(h * 0.9)), max(8, int(w * 0.9))


def sheet_columns(frames: int, height: int, width: int) -> int:
    """Columns of a roughly square sprite sheet."""
    return max(1, math.ceil(math.sqrt(frames * height / width)))


def tile(images: np.ndarray, cols: int) -> np.ndarray:
    """Lay (T, h, w) uint8 images out row by row on a (rows*h, cols*w) sheet."""
    t, h, w = images.shape
    rows = math.ceil(t / cols)
    padded = np.zeros((rows * cols, h, w), np.uint8)
    padded[:t] = images
    return padded.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def png_data_url(image: np.ndarray) -> str:
    """Encode a uint8 grayscale image as a PNG data URL."""
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
        raise ValueError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def mask_levels(masks: np.ndarray) -> np.ndarray:
    """Bool masks (T, h, w) -> uint8 with 128 inside and 255 on the one-pixel boundary."""
    inner = ndimage.binary_erosion(masks, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool),
                                   border_value=0)
    out = np.zeros(masks.shape, np.uint8)
    out[masks] = 128
    out[masks & ~inner] = 255
    return out


def frame_sheet(frames: np.ndarray, size: tuple[int, int]) -> dict:
    """The clip's frames as one PNG sheet plus its geometry."""
    small = resize_frames(frames, size)
    cols = sheet_columns(*small.shape)
    return {"tile_height": size[0], "tile_width": size[1], "columns": cols, "count": int(small.shape[0]),
            "png": png_data_url(tile(small, cols))}


def mask_sheet(binary: np.ndarray, size: tuple[int, int], columns: int) -> str:
    """Binary masks (T, H, W) as a PNG sheet laid out like the frame sheet."""
    small = resize_masks(binary.astype(bool), size)
    return png_data_url(tile(mask_levels(small), columns))
