"""What the CPU can do: its feature flags, and whether it computes bfloat16 natively."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bfloat16 arithmetic (AVX512-BF16 or AMX), where bf16 autocast runs faster."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS)
