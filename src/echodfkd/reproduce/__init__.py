"""`echodfkd reproduce`: the paper's whole chain over the user's EchoNet downloads (resumable, planned).

- `Settings`: every option; `parse_grid("1-4x1-4")` for the (B, l) grid.
- `plan(settings, inputs=None, throughput=None)`: the dry-run plan (clips, frames, compute, time, disk per
  step) without writing anything.
- `reproduce(settings)`: check -> label -> distil -> predict -> evaluate -> EchoCLIP -> report, each step
  resumable and skipped when done (OUT/steps.json).
"""

from __future__ import annotations

from typing import Any

from echodfkd.reproduce.inputs import Inputs, Settings, inspect_inputs, parse_grid, parse_shard
from echodfkd.reproduce.layout import Layout, step_list


def plan(settings: Settings, inputs: Inputs | None = None, throughput: Any = None) -> Any:
    """The dry-run Plan of a reproduce run (opens the inputs and the teacher to refuse bad ones first)."""
    from echodfkd.reproduce.inputs import check_echoclip
    from echodfkd.reproduce.estimate import plan as make_plan

    if inputs is None:
        inputs = inspect_inputs(settings)
        check_echoclip(settings, dry_run=True, notes=inputs.notes)
    return make_plan(settings, inputs, throughput)


def reproduce(settings: Settings, echo: Any = None) -> dict[str, Any]:
    """Run or resume the whole chain into `settings.out`; returns the top-level metrics."""
    from echodfkd.reproduce.chain import reproduce as run_chain

    return run_chain(settings, echo) if echo else run_chain(settings)


__all__ = ["Inputs", "Layout", "Settings", "inspect_inputs", "parse_grid", "parse_shard", "plan", "reproduce",
           "step_list"]
