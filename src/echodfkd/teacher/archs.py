"""The registry of teacher architectures (as segmentation_models_pytorch keeps one): name -> how to build it.

Every torchvision segmenter listed here is built by `teacher.model.build_segmenter` with a 1-channel head.
This module imports no torch, so commands can list the names without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TeacherArch:
    """One supported teacher: a torchvision.models.segmentation builder and how its 1-channel head is made."""

    name: str
    note: str
    swap_head: bool = False     # EchoNet's recipe: the 21-class model, its last 1x1 conv swapped for C->1
    aux_loss: bool | None = False  # None: the builder takes no aux_loss argument


ARCHS: dict[str, TeacherArch] = {a.name: a for a in (
    TeacherArch("deeplabv3_resnet50", "EchoNet-Dynamic's own teacher", swap_head=True),
    TeacherArch("deeplabv3_mobilenet_v3_large", "light DeepLabv3"),
    TeacherArch("lraspp_mobilenet_v3_large", "lightest; trains in minutes on a CPU", aux_loss=None),
    TeacherArch("fcn_resnet50", "FCN"),
)}
ARCH_NAMES: tuple[str, ...] = tuple(ARCHS)
DEFAULT_ARCH = "deeplabv3_resnet50"
