"""Models: the ConvLSTM student family and the torchvision teachers."""

from echodfkd.models.student import Student, StudentState

__all__ = ["Student", "StudentState"]
