"""Many streams at once: independent clips advance together through one batched step of the student.

`BatchedEngine` keeps every stream's recurrent state (h, c per layer) as one row of batched state tensors
and steps any subset of rows with one call of the `StreamingStudent` engine (eager: any batch size; the
compiled engine: one archive per batch bucket, the batch padded up to the bucket). A step over all rows in
order feeds the state straight in; a step over some rows gathers them and scatters the new state back, so
idle streams' state is left exactly as it was. A stream joins with zero state at any frame and leaves by
freeing its row for the next one.

`MultiStream` runs a scheduler thread over a `BatchedEngine`: streams (one thread each: a viewer upload, a
clip of `predict --streams N`) submit a frame and block; the scheduler runs one batched step as soon as
every active stream has a frame ready, or `max_wait_ms` after the first one arrived. `stream_predictor`
gives a `Predictor` whose frames go through one such stream, so every per-frame step after the network
(soft masks, largest region, alert statistics, areas) is the single-stream code itself.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from echodfkd.errors import EchoDFKDError, ModelError
from echodfkd.stream.alert import AlertAccumulator
from echodfkd.stream.predictor import Predictor

#: Batch sizes the compiled engine is built for (a step of n streams runs in the smallest bucket >= n).
BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Default wait for stragglers before a step runs without them (a viewer upload's extra latency at most).
MAX_WAIT_MS = 5.0


def check_streams(n: Any, flag: str = "--streams") -> int:
    """`n` as a stream count >= 1, else one-line EchoDFKDError naming `flag`."""
    try:
        value = int(n)
    except (TypeError, ValueError):
        raise EchoDFKDError(f"{flag} must be a whole number >= 1, got {n!r}") from None
    if value != n or value < 1:
        raise EchoDFKDError(f"{flag} must be a whole number >= 1, got {n!r}")
    return value


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
        self._compiled: dict[int, Any] = {}
        self._lock = threading.RLock()
        self._build_lock = threading.Lock()
        self._free: list[int] = []
        self._open: set[int] = set()
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

            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="echodfkd-batch",
                                            initializer=torch.set_num_threads, initargs=(1,))

    # ------------------------------------------------------------------ slots
    def _zeros(self, rows: int) -> list[Any]:
        import torch

        with torch.inference_mode():  # like every state tensor, so rows can be updated in place
            return self.net.init_state(rows, *self.size, self.device).flat()

    def _grow(self, rows: int) -> None:
        import torch

        new = _bucket(rows) if self.aot else max(rows, 2 * self.capacity)
        extra = self._zeros(new - self.capacity)
        fmt = torch.channels_last if self.net.channels_last else torch.contiguous_format
        with torch.inference_mode():
            self.state = extra if not self.state else [
                torch.cat([s, e]).contiguous(memory_format=fmt) for s, e in zip(self.state, extra)]
        self._free += range(self.capacity, new)
        self.capacity = new

    def open(self) -> int:
        """A row for a new stream, with zero state (the lowest free one)."""
        with self._lock:
            if not self._free:
                self._grow(self.capacity + 1)
            self._free.sort()
            slot = self._free.pop(0)
            self._open.add(slot)
            self.reset(slot)
            return slot

    def reset(self, slot: int) -> None:
        """Zero a stream's state (it starts again, as a new clip)."""
        import torch

        with self._lock, torch.inference_mode():
            self._check(slot)
            for s in self.state:
                s[slot].zero_()

    def close(self, slot: int) -> None:
        """Free a stream's row for the next stream that opens."""
        with self._lock:
            self._check(slot)
            self._open.discard(slot)
            self._free.append(slot)

    def _check(self, slot: int) -> None:
        if slot not in self._open:
            raise ModelError(f"stream slot {slot} is not open")

    @property
    def open_slots(self) -> int:
        """How many streams hold a row."""
        return len(self._open)

    # ------------------------------------------------------------------ compute
    def _compiled_for(self, batch: int) -> Any:
        with self._build_lock:  # parts on worker threads never build the same engine twice (not self._lock:
            # the stepping thread holds that while the parts run)
            return self._compiled[batch] if batch in self._compiled else self._build(batch)

    def _build(self, batch: int) -> Any:
        if batch not in self._compiled:
            from echodfkd.models.compiled import load_or_compile

            self._compiled[batch] = load_or_compile(self.student, self.size, self.precision, log=self.log,
                                                    batch=batch)
        return self._compiled[batch]

    def _parts(self, n: int) -> list[tuple[int, int]]:
        """The (start, stop) row ranges a step of n streams is split into."""
        size = self.chunk or -(-n // self.workers)
        return [(i, min(i + size, n)) for i in range(0, n, size)]

    def prepare(self, batches: Iterable[int]) -> None:
        """Build or load the compiled engines for these stream counts now (not inside a step's latency)."""
        if self.aot:
            for n in batches:
                for a, b in self._parts(int(n)):
                    self._compiled_for(_bucket(b - a))

    def _rows(self, n: int) -> int:
        """Rows a step of n streams runs with: n eager; compiled, the smallest built bucket that fits."""
        if not self.aot:
            return n
        built = [b for b in self._compiled if b >= n]
        return min(built) if built else _bucket(n)

    def _run(self, frames: Any, state: list[Any]) -> tuple[Any, list[Any]]:
        if self.aot:
            return self._compiled_for(frames.shape[0]).step(frames, state)
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
            x = torch.from_numpy(frames)[:, None].to(self.device)
            parts = self._parts(n)
            if len(parts) == 1 and n == self.capacity == self._rows(n) and list(slots) == list(range(n)):
                logits, self.state = self._run(x, self.state)  # every row in order: no copies
                out = logits.float().cpu().numpy()
            elif len(parts) == 1:
                out = self._step_rows(list(slots), x)
            else:  # disjoint rows: the parts may update the state tensors concurrently
                jobs = [(list(slots[a:b]), x[a:b]) for a, b in parts]
                done = self._pool.map(self._part, jobs) if self._pool else map(self._part, jobs)
                out = np.concatenate(list(done))
            self.steps += 1
            return out

    def _part(self, job: tuple[list[int], Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():  # worker threads do not inherit the caller's mode
            return self._step_rows(*job)

    def _step_rows(self, slots: list[int], x: Any) -> np.ndarray:
        """Step some rows: gather their state, run (padded to the compiled bucket), scatter the new state back."""
        import torch

        n, rows = len(slots), self._rows(len(slots))
        fmt = torch.channels_last if self.net.channels_last else torch.contiguous_format
        index = torch.as_tensor(slots, device=self.device)
        sub = [s.index_select(0, index) for s in self.state]
        if rows > n:  # pad to the compiled bucket with zero rows, thrown away after
            pad = self._zeros(rows - n)
            sub = [torch.cat([s, p]) for s, p in zip(sub, pad)]
            x = torch.cat([x, x.new_zeros(rows - n, *x.shape[1:])])
        sub = [s.contiguous(memory_format=fmt) for s in sub]
        logits, new = self._run(x, sub)
        for s, t in zip(self.state, new):
            s.index_copy_(0, index, t[:n])
        return logits[:n].float().cpu().numpy()


class _Pending:
    """A frame waiting for the next batched step, and where its logits go."""

    __slots__ = ("slot", "frame", "done", "logits", "error")

    def __init__(self, slot: int, frame: np.ndarray) -> None:
        self.slot, self.frame, self.done = slot, frame, threading.Event()
        self.logits: np.ndarray | None = None
        self.error: BaseException | None = None


class StreamHandle:
    """One stream of a `MultiStream`, with the single-stream engine's interface (`step`, `reset`)."""

    backend = "torch"

    def __init__(self, owner: "MultiStream", slot: int) -> None:
        self.owner, self.slot, self.closed = owner, slot, False

    def step(self, frame: np.ndarray) -> np.ndarray:
        """One float32 frame (H, W) on the 0-255 scale -> logits (C, H, W), after the batched step it joined."""
        if self.closed:
            raise ModelError("this stream is closed")
        frame = np.asarray(frame, dtype=np.float32)
        if frame.shape != self.owner.engine.size:
            size = self.owner.engine.size
            raise ModelError(f"the batched engine takes {size[0]}x{size[1]} frames, got {frame.shape}")
        return self.owner._submit(self, frame)

    def reset(self) -> None:
        """Start a new clip on this stream (zero state); the stream is idle until its next frame."""
        self.owner._idle(self)
        self.owner.engine.reset(self.slot)

    def idle(self) -> None:
        """Say that no frame follows soon (a clip ended), so steps do not wait for this stream."""
        self.owner._idle(self)

    def close(self) -> None:
        """Leave: free this stream's row."""
        if not self.closed:
            self.closed = True
            self.owner._idle(self)
            self.owner.engine.close(self.slot)


class MultiStream:
    """A scheduler thread that advances every stream with a frame ready through one batched engine step."""

    def __init__(self, engine: BatchedEngine, max_wait_ms: float = MAX_WAIT_MS) -> None:
        if not max_wait_ms >= 0:
            raise ModelError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.engine, self.max_wait = engine, max_wait_ms / 1000.0
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._active: set[int] = set()  # streams that sent a frame since their last reset / idle
        self._stopped = False
        self.batch_sizes: list[int] = []  # streams per batched step (for benchmarks)
        self._thread = threading.Thread(target=self._loop, name="echodfkd-multistream", daemon=True)
        self._thread.start()

    @classmethod
    def from_predictor(cls, predictor: Predictor, max_wait_ms: float = MAX_WAIT_MS, chunk: int | None = None,
                       workers: int = 1) -> "MultiStream":
        """Batch streams through `predictor`'s own torch engine (same weights, precision, size, device)."""
        engine = getattr(predictor, "engine", None)
        if getattr(predictor, "backend", None) != "torch" or not hasattr(engine, "net"):
            raise EchoDFKDError("many streams at once need the torch backend (ONNX Runtime steps one stream)")
        batched = BatchedEngine(engine.student, predictor.size, precision=predictor.precision,
                                compile=predictor.compiled, net=engine.net, log=engine.log, chunk=chunk,
                                workers=workers)
        return cls(batched, max_wait_ms)

    # ------------------------------------------------------------------ streams
    def open(self) -> StreamHandle:
        """A new stream (zero state)."""
        if self._stopped:
            raise ModelError("the batched engine is shut down")
        return StreamHandle(self, self.engine.open())

    @contextlib.contextmanager
    def stream(self, predictor: Predictor) -> Iterator[Predictor]:
        """A `Predictor` (settings of `predictor`) streaming through a new stream; the stream leaves at exit."""
        handle = self.open()
        try:
            yield stream_predictor(predictor, handle)
        finally:
            handle.close()

    def predict_clip(self, predictor: Predictor, frames: np.ndarray, fps: float) -> Any:
        """`predictor.predict_clip`, stepped together with whatever other streams run now."""
        with self.stream(predictor) as p:
            return p.predict_clip(frames, fps)

    def shutdown(self) -> None:
        """Stop the scheduler; frames still waiting get an error."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ scheduler
    def _submit(self, handle: StreamHandle, frame: np.ndarray) -> np.ndarray:
        item = _Pending(handle.slot, frame)
        with self._cond:
            if self._stopped:
                raise ModelError("the batched engine is shut down")
            self._active.add(handle.slot)
            self._pending.append(item)
            self._cond.notify_all()
        item.done.wait()
        if item.error is not None:
            raise item.error
        assert item.logits is not None
        return item.logits

    def _idle(self, handle: StreamHandle) -> None:
        with self._cond:
            self._active.discard(handle.slot)
            self._cond.notify_all()

    def _ready(self) -> bool:
        waiting = {p.slot for p in self._pending}
        return waiting >= self._active

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and not self._pending:
                    self._cond.wait()
                deadline = time.perf_counter() + self.max_wait
                while not self._stopped and not self._ready():
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch, self._pending = self._pending, []
                stopped = self._stopped
            if stopped:
                for item in batch:
                    item.error = ModelError("the batched engine is shut down")
                    item.done.set()
                return
            self._run(batch)

    def _run(self, batch: list[_Pending]) -> None:
        # One frame per stream per step: a stream has only one frame in flight (it waits for its logits).
        try:
            logits = self.engine.step([p.slot for p in batch], np.stack([p.frame for p in batch]))
            for item, out in zip(batch, logits):
                item.logits = out
        except BaseException as exc:  # every waiting stream hears of it, not only the scheduler
            for item in batch:
                item.error = exc if isinstance(exc, EchoDFKDError) else ModelError(
                    f"batched step failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        finally:
            self.batch_sizes.append(len(batch))
            for item in batch:
                item.done.set()


class StreamPredictor(Predictor):
    """A `Predictor` that shares another's settings and steps its frames through one `MultiStream` stream."""

    def stream_clip(self, frames: np.ndarray) -> Iterator[Any]:
        """As `Predictor.stream_clip`; after the last frame the stream is idle (steps stop waiting for it)."""
        try:
            yield from super().stream_clip(frames)
        finally:
            self.engine.idle()


def stream_predictor(predictor: Predictor, handle: StreamHandle) -> StreamPredictor:
    """A copy of `predictor` (thresholds, warm-up, alert, sizes) whose engine is `handle`, with its own alert state."""
    clone = StreamPredictor.__new__(StreamPredictor)
    clone.__dict__.update(predictor.__dict__)  # settings only; the per-clip state is replaced below
    clone.engine = handle
    clone._acc = AlertAccumulator()
    clone.reset()
    return clone


def run_streams(predictor: Predictor, items: Sequence[Any], job: Callable[[Any, Predictor], Iterator[int]],
                streams: int, max_wait_ms: float = 50.0) -> Iterator[int]:
    """Run `job(item, p)` for every item on `streams` worker threads, each job's `p` one stream of a shared
    batched engine; yields what the jobs yield (e.g. 1 per frame) and re-raises the first job error."""
    streams = check_streams(streams)
    todo: queue.Queue = queue.Queue()
    for item in items:
        todo.put(item)
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    multi = MultiStream.from_predictor(predictor, max_wait_ms)
    multi.engine.prepare([min(streams, len(items))])  # one bucket; the last, fewer clips are padded to it

    def worker() -> None:
        try:
            with multi.stream(predictor) as p:
                while not stop.is_set():
                    try:
                        item = todo.get_nowait()
                    except queue.Empty:
                        break
                    for tick in job(item, p):
                        events.put(("tick", tick))
                        if stop.is_set():
                            break
                    p.engine.idle()
        except BaseException as exc:  # handed to the caller's thread
            events.put(("error", exc))
        finally:
            events.put(("done", None))

    threads = [threading.Thread(target=worker, name=f"echodfkd-stream-{i}", daemon=True)
               for i in range(min(streams, max(len(items), 1)))]
    for t in threads:
        t.start()
    running, error = len(threads), None
    try:
        while running:
            kind, value = events.get()
            if kind == "tick":
                yield value
            elif kind == "error":
                error = error or value
                stop.set()
            else:
                running -= 1
    finally:
        stop.set()
        for t in threads:
            t.join()
        multi.shutdown()
    if error is not None:
        raise error
