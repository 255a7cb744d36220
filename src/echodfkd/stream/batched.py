"""Recurrent state of many streams in one batch: `BatchedEngine` steps any subset of streams in one call.

Every stream's state (h, c per layer) is one row of batched state tensors. A step over all rows in order
feeds the state straight into the `StreamingStudent` engine; a step over some rows gathers them and
scatters the new state back, so idle streams' state stays exactly as it was. The compiled (AOT) engine is
built per batch bucket and a step is padded up to the bucket with zero rows; a bucket not built yet runs
eagerly while it builds in the background (`prepare` builds them up front). A stream joins with zero
state at any frame and leaves by freeing its row for the next one. A stream's slot (its id) and its row
are apart: when streams leave until half the rows or fewer would do, the state shrinks to the rows still
open (in their order), so an engine that once held 64 streams and now holds 16 steps 16 rows whole
instead of gathering 16 of 64. `chunk`/`workers` split a step into
calls of fewer rows on threads of one intra-op thread each (chosen by `benchmarks/bench_streams.py`); each
worker thread loads its own copy of a compiled engine (one compiled model runs one call at a time).
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from echodfkd.errors import EchoDFKDError, ModelError

#: Batch sizes the compiled engine is built for (a step of n streams runs in the smallest bucket >= n).
BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

def _bucket(n: int) -> int:
    for b in BUCKETS:
        if b >= n:
            return b
    raise ModelError(f"at most {BUCKETS[-1]} streams can step together, got {n}")


class BatchedEngine:
    """Recurrent state of many streams, one row each, stepped together through one engine call (thread-safe)."""

    def __init__(self, student: Any, size: tuple[int, int], device: str = "cpu", precision: str = "fp32",
                 compile: bool = False, net: Any = None, log: Callable[[str], None] | None = None,
                 chunk: int | None = None, workers: int = 1) -> None:
        import torch

        from echodfkd.stream.engines import TorchEngine

        if net is None:  # the same construction (precision checks, device) as the single-stream engine
            net = TorchEngine(student, device=device, precision=precision).net
        self.student, self.net, self.precision, self.log = student, net, precision, log
        self.size = (int(size[0]), int(size[1]))
        self.device = next(net.parameters()).device
        self.aot = bool(compile) and self.device.type == "cpu"
        self._call = torch.compile(net, dynamic=False) if compile and not self.aot else net
        self._compiled: dict[tuple[int, int], Any] = {}  # (batch, worker) -> compiled engine
        self._lock = threading.RLock()
        self._build_lock = threading.Lock()
        self._building: set[tuple[int, int]] = set()
        self._local = threading.local()  # .worker: the pool thread's index (its compiled engines)
        self._worker_ids = itertools.count()
        self._free: list[int] = []  # free rows
        self._row: dict[int, int] = {}  # open stream slot -> its state row
        self.capacity = 0
        self.state: list[Any] = []
        self.steps = 0  # batched calls so far (for benchmarks)
        # A step of n streams runs as calls of at most `chunk` rows (None: one call), on `workers` threads of
        # one intra-op thread each (CPU caches and busy cores favour several small calls over one big one).
        if chunk is not None and chunk < 1 or workers < 1:
            raise ModelError(f"chunk must be >= 1 (or None) and workers >= 1, got {chunk} and {workers}")
        self.chunk, self.workers = chunk, workers
        self._pool = None
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="echodfkd-batch", initializer=self._init_worker)

    def _init_worker(self) -> None:
        import torch

        torch.set_num_threads(1)
        self._local.worker = next(self._worker_ids) % self.workers

    # ------------------------------------------------------------------ slots
    @property
    def _format(self) -> Any:
        """The memory layout of the engine's state tensors."""
        import torch

        return torch.channels_last if self.net.channels_last else torch.contiguous_format

    def _zeros(self, rows: int) -> list[Any]:
        import torch

        with torch.inference_mode():  # like every state tensor, so rows can be updated in place
            return self.net.init_state(rows, *self.size, self.device).flat()

    def _grow(self, rows: int) -> None:
        import torch

        new = _bucket(rows) if self.aot else max(rows, 2 * self.capacity)
        extra = self._zeros(new - self.capacity)
        with torch.inference_mode():
            self.state = extra if not self.state else [
                torch.cat([s, e]).contiguous(memory_format=self._format) for s, e in zip(self.state, extra)]
        self._free += range(self.capacity, new)
        self.capacity = new

    def open(self) -> int:
        """A slot for a new stream (the lowest unused number) on the lowest free row, with zero state."""
        with self._lock:
            if not self._free:
                self._grow(self.capacity + 1)
            self._free.sort()
            slot = min(set(range(len(self._row) + 1)) - self._row.keys())
            self._row[slot] = self._free.pop(0)
            self.reset(slot)
            return slot

    def row(self, slot: int) -> int:
        """The state row of an open stream (it moves when the state shrinks)."""
        with self._lock:
            self._check(slot)
            return self._row[slot]

    def reset(self, slot: int) -> None:
        """Zero a stream's state (it starts again, as a new clip)."""
        import torch

        with self._lock, torch.inference_mode():
            self._check(slot)
            for s in self.state:
                s[self._row[slot]].zero_()

    def close(self, slot: int) -> None:
        """Free a stream's row for the next stream that opens; shrink the state once half of it would do."""
        with self._lock:
            self._check(slot)
            self._free.append(self._row.pop(slot))
            n = len(self._row)
            target = (_bucket(n) if n else 0) if self.aot else n
            if target <= self.capacity // 2:
                self._shrink(target)

    def _shrink(self, rows: int) -> None:
        """Keep the open streams' rows, in their order, as rows 0..n-1 of `rows`-row state tensors."""
        import torch

        order = sorted(self._row, key=self._row.get)
        with torch.inference_mode():
            if rows == 0:
                self.state = []
            else:
                index = torch.as_tensor([self._row[s] for s in order], dtype=torch.long, device=self.device)
                kept = [s.index_select(0, index) for s in self.state]
                if rows > len(order):  # zero rows up to the bucket
                    kept = [torch.cat([k, z]) for k, z in zip(kept, self._zeros(rows - len(order)))]
                self.state = [k.contiguous(memory_format=self._format) for k in kept]
        self._row = {s: i for i, s in enumerate(order)}
        self._free = list(range(len(order), rows))
        self.capacity = rows

    def _check(self, slot: int) -> None:
        if slot not in self._row:
            raise ModelError(f"stream slot {slot} is not open")

    @property
    def open_slots(self) -> int:
        """How many streams hold a row."""
        return len(self._row)

    # ------------------------------------------------------------------ compute
    def _compiled_for(self, batch: int, wait: bool = True, worker: int = 0) -> Any:
        """The compiled engine for `batch` rows (`worker`'s copy): built now (`wait`), else None while it builds
        in the background."""
        key = (batch, worker)
        with self._build_lock:  # never built twice (not self._lock: the stepping thread holds that)
            if key in self._compiled:
                return self._compiled[key]
            if wait:
                self._compiled[key] = self._build(batch)
                return self._compiled[key]
            if key not in self._building:
                self._building.add(key)
                threading.Thread(target=self._build_later, args=key, daemon=True).start()
            return None

    def _build(self, batch: int) -> Any:
        from echodfkd.models.compiled import load_or_compile

        return load_or_compile(self.student, self.size, self.precision, log=self.log, batch=batch)

    def _build_later(self, batch: int, worker: int) -> None:
        try:
            engine = self._build(batch)
        except EchoDFKDError as exc:  # e.g. no C++ compiler: this batch size stays eager
            if self.log and worker == 0:
                self.log(f"batched engine for {batch} streams stays eager: {exc}")
            return
        with self._build_lock:
            self._compiled[(batch, worker)] = engine

    def _parts(self, n: int) -> list[tuple[int, int]]:
        """The (start, stop) row ranges a step of n streams is split into."""
        size = self.chunk or -(-n // self.workers)
        return [(i, min(i + size, n)) for i in range(0, n, size)]

    def prepare(self, batches: Iterable[int]) -> None:
        """Build or load the compiled engines for these stream counts now (not inside a step's latency)."""
        if self.aot:
            for n in batches:
                parts = self._parts(int(n))
                for a, b in parts:
                    for worker in range(min(self.workers, len(parts))):  # the cache file is built once
                        self._compiled_for(_bucket(b - a), worker=worker)

    def _rows(self, n: int) -> int:
        """Rows a step of n streams runs with: n eager; compiled, the smallest built bucket that fits."""
        if not self.aot:
            return n
        built = [b for b, _ in list(self._compiled) if b >= n]  # list(): a background build may add one
        return min(built) if built else _bucket(n)

    def _run(self, frames: Any, state: list[Any]) -> tuple[Any, list[Any]]:
        if self.aot:
            engine = self._compiled_for(frames.shape[0], wait=False, worker=getattr(self._local, "worker", 0))
            if engine is not None:
                return engine.step(frames, state)
        # Eager (also while a batch size's compiled engine builds: same maths and state layout, so a stream
        # can move between the two at any frame, and no step waits ~30 s for a build).
        out = self._call(frames, *state)
        return out[0], list(out[1:])

    def step(self, slots: Sequence[int], frames: np.ndarray) -> np.ndarray:
        """One frame (H, W) per listed stream, float32 on the 0-255 scale -> logits (n, C, H, W) in that order."""
        import torch

        frames = np.ascontiguousarray(frames, dtype=np.float32)
        n = len(slots)
        if frames.shape != (n, *self.size):
            raise ModelError(f"expected {n} frames of {self.size[0]}x{self.size[1]}, got {frames.shape}")
        if len(set(slots)) != n:
            raise ModelError("a stream can step once per batched step")
        with self._lock, torch.inference_mode():
            for slot in slots:
                self._check(slot)
            rows = [self._row[slot] for slot in slots]
            x = torch.from_numpy(frames)[:, None].to(self.device)
            parts = self._parts(n)
            if len(parts) == 1 and n == self.capacity == self._rows(n) and sorted(rows) == list(range(n)):
                # Every row steps: put the frames in row order and use the state whole. Gathering and
                # scattering every state tensor instead costs several passes over it per step.
                in_order = rows == list(range(n))
                if not in_order:
                    x = x[torch.as_tensor(np.argsort(rows), device=self.device)]
                logits, self.state = self._run(x, self.state)
                out = logits.float().cpu().numpy()
                if not in_order:
                    out = out[np.asarray(rows)]
            elif len(parts) == 1:
                out = self._step_rows(rows, x)
            else:  # disjoint rows: the parts may update the state tensors concurrently
                jobs = [(rows[a:b], x[a:b]) for a, b in parts]
                done = self._pool.map(self._part, jobs) if self._pool else map(self._part, jobs)
                out = np.concatenate(list(done))
            self.steps += 1
            return out

    def _part(self, job: tuple[list[int], Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():  # worker threads do not inherit the caller's mode
            return self._step_rows(*job)

    def _step_rows(self, rows: list[int], x: Any) -> np.ndarray:
        """Step some rows: gather their state, run (padded to the compiled bucket), scatter the new state back."""
        import torch

        n, padded = len(rows), self._rows(len(rows))
        index = torch.as_tensor(rows, device=self.device)
        sub = [s.index_select(0, index) for s in self.state]
        if padded > n:  # pad to the compiled bucket with zero rows, thrown away after
            pad = self._zeros(padded - n)
            sub = [torch.cat([s, p]) for s, p in zip(sub, pad)]
            x = torch.cat([x, x.new_zeros(padded - n, *x.shape[1:])])
        sub = [s.contiguous(memory_format=self._format) for s in sub]
        logits, new = self._run(x, sub)
        for s, t in zip(self.state, new):
            s.index_copy_(0, index, t[:n])
        return logits[:n].float().cpu().numpy()
