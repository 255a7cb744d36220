"""EchoDFKD: data-free knowledge distillation for cardiac ultrasound LV segmentation."""

from echodfkd.errors import DatasetError, EchoDFKDError, VideoError

__version__ = "0.1.0"
__all__ = ["EchoDFKDError", "DatasetError", "VideoError", "__version__"]
