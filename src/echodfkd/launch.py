"""Which share of the work this process does: `i/N` shards, and rank/world from the launcher's environment.

Launchers: torchrun (RANK, WORLD_SIZE, LOCAL_RANK) and SLURM's srun (SLURM_PROCID, SLURM_NTASKS,
SLURM_LOCALID). torchrun's variables win when both are set (torchrun inside an srun allocation).
"""

from __future__ import annotations

import argparse
import os

from echodfkd.errors import EchoDFKDError

#: (rank, world size, local rank) variables of each launcher, in order of precedence.
LAUNCHERS = (("RANK", "WORLD_SIZE", "LOCAL_RANK"), ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"))


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """Validate an (i, N) shard: 0 <= i < N."""
    i, n = int(shard[0]), int(shard[1])
    if n < 1 or not 0 <= i < n:
        raise EchoDFKDError(f"shard {i}/{n}: need 0 <= i < N (i counts from 0)")
    return i, n


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' (0-based i < N) -> (i, N); a malformed one is a one-line EchoDFKDError."""
    try:
        i, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise EchoDFKDError(f"--shard {text!r}: expected i/N, e.g. 0/4 (i counts from 0)") from None
    return check_shard((i, n))


def shard_arg(text: str) -> tuple[int, int]:
    """argparse `type=` for an `i/N` shard flag (the parser names the flag in its one-line error)."""
    try:
        return parse_shard(text)
    except EchoDFKDError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--shard {text!r}: ")) from None


def _int_env(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise EchoDFKDError(f"environment variable {name}={value!r} is not an integer") from None


def launcher_rank_world() -> tuple[int, int]:
    """(global rank, world size) set by torchrun or srun, else (0, 1); checked like a shard."""
    for rank_var, world_var, _ in LAUNCHERS:
        world = _int_env(world_var)
        if world is not None:
            return check_shard((_int_env(rank_var) or 0, world))
    return 0, 1


def local_rank() -> int | None:
    """This process's rank on its node (the GPU index it should take), when a launcher set one."""
    for _, _, local_var in LAUNCHERS:
        value = _int_env(local_var)
        if value is not None:
            return value
    return None
