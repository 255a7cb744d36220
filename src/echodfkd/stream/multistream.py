"""Many streams at once: independent clips advance together through one batched step of the student.

The streams' state lives in a `stream.batched.BatchedEngine` (one row each; join and leave at any frame).
`MultiStream` runs a scheduler thread over a `BatchedEngine`: streams (one thread each: a viewer upload, a
clip of `predict --streams N`) submit a frame and block; the scheduler runs one batched step as soon as
every active stream has a frame ready, or `max_wait_ms` after the first one arrived. `stream_predictor`
gives a `Predictor` whose frames go through one such stream. The work after the network (soft masks,
largest region, alert statistics, areas) is `predictor.finish_frames`, the single-stream code itself, run
by the scheduler thread once per step for every frame of the batch, not by N stream threads fighting for the
GIL (`post_in_scheduler=False` keeps that way, for benchmarks). With `overlap=True` one post-processing
thread finishes batch k while the scheduler steps batch k+1 (the compiled step releases the GIL): a stream's
`stream_clip` sends frame t+1 once frame t is stepped. Batches are finished in step order, so each stream's
alert statistics see its frames in order. It is off by default: on 2 busy cores it showed no clear gain
(benchmarks/bench_streams.py, `predict-overlap`: within the noise) and took 0-6 % more CPU per frame.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Any, Iterator

import numpy as np

from echodfkd.errors import EchoDFKDError, ModelError
from echodfkd.stream.batched import BatchedEngine
from echodfkd.stream.predictor import FrameResult, Predictor, check_clip, finish_frames

#: Default wait for stragglers before a step runs without them (a viewer upload's extra latency at most).
MAX_WAIT_MS = 5.0
#: Rows per call of an eager batched step split over two workers (`auto_layout`).
AUTO_CHUNK = 4


def auto_layout(compiled: bool, chunk: int | None = None) -> tuple[int | None, int]:
    """(chunk, workers) of a batched step: eager on >= 2 torch threads, calls of <= 4 rows on 2 one-thread
    workers; compiled, one call (bench_streams, demo student on 2 cores, N = 16: eager c4w2 1.1-1.3x one
    call; compiled halves on 2 workers with their own engine copies, c0w2, went 0.83x to 1.5x one call in
    three interleaved runs on busy cores, so the compiled engine keeps the one call measured quiet)."""
    import torch

    if compiled or torch.get_num_threads() < 2:
        return chunk, 1
    return chunk or AUTO_CHUNK, 2


def check_streams(n: Any, flag: str = "--streams") -> int:
    """`n` as a stream count >= 1, else one-line EchoDFKDError naming `flag`."""
    try:
        value = int(n)
    except (TypeError, ValueError):
        raise EchoDFKDError(f"{flag} must be a whole number >= 1, got {n!r}") from None
    if value != n or value < 1:
        raise EchoDFKDError(f"{flag} must be a whole number >= 1, got {n!r}")
    return value


class _Pending:
    """A frame waiting for the next batched step, and where its logits go."""

    __slots__ = ("slot", "frame", "stepped", "done", "logits", "error", "post", "small", "result", "start", "urgent")

    def __init__(self, slot: int, frame: np.ndarray, post: Predictor | None = None,
                 small: np.ndarray | None = None, start: float = 0.0, urgent: bool = True) -> None:
        self.slot, self.frame, self.start = slot, frame, start
        self.urgent = urgent  # its stream sends nothing before this result: finish it without waiting
        self.done = threading.Event()  # result (or error) there
        self.stepped = None if urgent else threading.Event()  # network step done (a pipelined frame only)
        self.logits: np.ndarray | None = None
        self.error: BaseException | None = None
        self.post, self.small = post, small  # finished in the scheduler: its predictor, uint8 frame
        self.result: FrameResult | None = None


class StreamHandle:
    """One stream of a `MultiStream`, with the single-stream engine's interface (`step`, `reset`)."""

    backend = "torch"

    def __init__(self, owner: "MultiStream", slot: int) -> None:
        self.owner, self.slot, self.closed = owner, slot, False

    def step(self, frame: np.ndarray) -> np.ndarray:
        """One float32 frame (H, W) on the 0-255 scale -> logits (C, H, W), after the batched step it joined."""
        return self.owner._submit(_Pending(self.slot, self._checked(frame))).logits

    def _checked(self, frame: np.ndarray) -> np.ndarray:
        if self.closed:
            raise ModelError("this stream is closed")
        frame = np.asarray(frame, dtype=np.float32)
        if frame.shape != self.owner.engine.size:
            size = self.owner.engine.size
            raise ModelError(f"the batched engine takes {size[0]}x{size[1]} frames, got {frame.shape}")
        return frame

    def finish(self, predictor: Predictor, small: np.ndarray) -> FrameResult:
        """One uint8 frame at the model size (`Predictor.admit`) -> `predictor`'s FrameResult, finished in the
        scheduler thread together with the rest of the batch (latency left 0)."""
        return self.owner._submit(_Pending(self.slot, self._checked(small), predictor, small)).result

    def send(self, predictor: Predictor, small: np.ndarray, start: float, last: bool = False) -> _Pending:
        """As `finish`, without waiting: the pending frame's `stepped` is set after the network step (the next
        frame may be sent), `done` once `result` (or `error`) is there; `start` is when the frame came in,
        `last` says that no frame follows it soon."""
        item = _Pending(self.slot, self._checked(small), predictor, small, start, urgent=last)
        return self.owner._submit(item, wait=False)

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

    def __init__(self, engine: BatchedEngine, max_wait_ms: float = MAX_WAIT_MS, post_in_scheduler: bool = True,
                 overlap: bool = False) -> None:
        if not max_wait_ms >= 0:
            raise ModelError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.engine, self.max_wait = engine, max_wait_ms / 1000.0
        self.post_in_scheduler = post_in_scheduler
        self.overlap = bool(overlap and post_in_scheduler)
        self._posts: queue.Queue = queue.Queue()  # stepped batches for the post-processing thread, in step order
        self._post_lock = threading.Lock()
        self._post_closed = False
        self._post_thread = None
        self._step_cond = threading.Condition()
        self._steps_started = 0
        if self.overlap:
            self._post_thread = threading.Thread(target=self._post_loop, name="echodfkd-multistream-post", daemon=True)
            self._post_thread.start()
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._active: set[int] = set()  # streams that sent a frame since their last reset / idle
        self._stopped = False
        self.batch_sizes: list[int] = []  # streams per batched step (for benchmarks)
        self._thread = threading.Thread(target=self._loop, name="echodfkd-multistream", daemon=True)
        self._thread.start()

    @classmethod
    def from_predictor(cls, predictor: Predictor, max_wait_ms: float = MAX_WAIT_MS, chunk: int | None = None,
                       workers: int | None = None, post_in_scheduler: bool = True,
                       overlap: bool = False) -> "MultiStream":
        """Batch streams through `predictor`'s own torch engine (same weights, precision, size, device);
        `workers` None: the measured layout (`auto_layout`)."""
        engine = getattr(predictor, "engine", None)
        if getattr(predictor, "backend", None) != "torch" or not hasattr(engine, "net"):
            raise EchoDFKDError("many streams at once need the torch backend (ONNX Runtime steps one stream)")
        if workers is None:
            chunk, workers = auto_layout(predictor.compiled, chunk)
        batched = BatchedEngine(engine.student, predictor.size, precision=predictor.precision,
                                compile=predictor.compiled, net=engine.net, log=engine.log, chunk=chunk,
                                workers=workers)
        return cls(batched, max_wait_ms, post_in_scheduler, overlap)

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
        """Stop the scheduler; frames still waiting get an error (stepped ones are still finished)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        with self._post_lock:  # later batches (a scheduler still inside a step) are finished by the scheduler
            self._post_closed = True
            self._posts.put(None)
        if self._post_thread is not None:
            self._post_thread.join(timeout=5)

    # ------------------------------------------------------------------ scheduler
    def _submit(self, item: _Pending, wait: bool = True) -> _Pending:
        with self._cond:
            if self._stopped:
                raise ModelError("the batched engine is shut down")
            self._active.add(item.slot)
            self._pending.append(item)
            if len(self._pending) == 1 or self._ready():  # wake the scheduler only when it has news (GIL)
                self._cond.notify_all()
        if not wait:
            return item
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item

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
                batch, self._pending = sorted(self._pending, key=lambda p: p.slot), []  # rows in order: no gather
                stopped = self._stopped
            if stopped:
                for item in batch:
                    item.error = ModelError("the batched engine is shut down")
                    _set_stepped(item)
                    item.done.set()
                return
            self._run(batch)

    def _run(self, batch: list[_Pending]) -> None:
        # One frame per stream per step: a stream sends its next frame only after this one was stepped.
        self.batch_sizes.append(len(batch))
        post: list[_Pending] = []
        with self._step_cond:  # a finished batch waiting for the next step to start may start now
            self._steps_started += 1
            self._step_cond.notify_all()
        try:
            logits = self.engine.step([p.slot for p in batch], np.stack([p.frame for p in batch]))
            for item, out in zip(batch, logits):
                item.logits = out
            post = [item for item in batch if item.post is not None]
        except BaseException as exc:  # every waiting stream hears of it, not only the scheduler
            _fail(batch, exc)
        for item in batch:
            _set_stepped(item)
            if item.post is None or item.error is not None:
                item.done.set()
        if post:
            with self._post_lock:
                if self.overlap and not self._post_closed:
                    self._posts.put((self._steps_started, post))
                    return
            self._finish(post)

    def _finish(self, post: list[_Pending]) -> None:
        """One `finish_frames` call for every stepped frame of a batch (one GIL holder, no handoffs)."""
        try:
            results = finish_frames([item.post for item in post], np.stack([item.small for item in post]),
                                    np.stack([item.logits for item in post]))
            for item, result in zip(post, results):
                item.result = result
        except BaseException as exc:
            _fail(post, exc)
        finally:
            for item in post:
                item.done.set()

    def _post_loop(self) -> None:
        while (job := self._posts.get()) is not None:
            step, post = job
            if not any(item.urgent for item in post):
                # Start once the next step is running (the GIL is then free), not while the streams hand in
                # its frames: they would queue for the GIL behind this thread. max_wait at most.
                with self._step_cond:
                    self._step_cond.wait_for(lambda: self._steps_started > step or self._stopped, self.max_wait)
            self._finish(post)


def _set_stepped(item: _Pending) -> None:
    if item.stepped is not None:
        item.stepped.set()


def _fail(items: list[_Pending], exc: BaseException) -> None:
    """Hand one error to every listed frame (a one-line ModelError unless it is already one of ours)."""
    for item in items:
        item.error = exc if isinstance(exc, EchoDFKDError) else ModelError(
            f"batched step failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")


class StreamPredictor(Predictor):
    """A `Predictor` that shares another's settings and steps its frames through one `MultiStream` stream."""

    def push(self, frame: np.ndarray) -> FrameResult:
        """As `Predictor.push`; the scheduler finishes the frame with the rest of its batch (`finish_frames`)."""
        if not self.engine.owner.post_in_scheduler:
            return super().push(frame)
        start = time.perf_counter()
        result = self.engine.finish(self, self.admit(frame))
        result.latency_ms = (time.perf_counter() - start) * 1000.0
        return result

    def stream_clip(self, frames: np.ndarray) -> Iterator[Any]:
        """As `Predictor.stream_clip`; after the last frame the stream is idle (steps stop waiting for it).

        With `overlap`, frame t+1 is sent once frame t has been stepped, so the network steps it while frame
        t is finished; a result's latency runs from its frame's arrival to its finished masks."""
        if not self.engine.owner.overlap:
            try:
                yield from super().stream_clip(frames)
            finally:
                self.engine.idle()
            return
        frames = check_clip(frames)
        self.reset()
        item = sent = None
        try:
            sent = self._send(frames, 0)
            for t in range(len(frames)):
                item, sent = sent, None
                (item.stepped or item.done).wait()  # the last frame has no `stepped`: nothing follows it
                if item.error is None:
                    if t + 1 < len(frames):
                        sent = self._send(frames, t + 1)
                    item.done.wait()
                if item.error is not None:
                    raise item.error
                item.result.latency_ms = (time.perf_counter() - item.start) * 1000.0
                yield item.result
        finally:
            self.engine.idle()
            for pending in (item, sent):  # no post-processing touches this predictor after we return
                if pending is not None:
                    pending.done.wait()

    def _send(self, frames: np.ndarray, t: int) -> _Pending:
        start, last = time.perf_counter(), t + 1 == len(frames)
        item = self.engine.send(self, self.admit(frames[t]), start, last)
        if last:  # steps need not wait for this stream any more (its last frame still steps with the next one)
            self.engine.idle()
        return item


def stream_predictor(predictor: Predictor, handle: StreamHandle) -> StreamPredictor:
    """A copy of `predictor` (thresholds, warm-up, alert, sizes) whose engine is `handle`, with its own alert state."""
    return predictor.fork(handle, StreamPredictor)
