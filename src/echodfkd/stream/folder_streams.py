"""Run jobs over many clips as streams of one shared batched engine (`predict FOLDER --streams N`)."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, Sequence

from echodfkd.stream.multistream import MultiStream, check_streams
from echodfkd.stream.predictor import Predictor


def run_streams(predictor: Predictor, items: Sequence[Any], job: Callable[[Any, Predictor], Iterator[int]],
                streams: int, max_wait_ms: float = 50.0) -> Iterator[int]:
    """Run `job(item, p)` for every item on `streams` worker threads, each job's `p` one stream of a shared
    batched engine; yields what the jobs yield (e.g. 1 per frame) and re-raises the first job error.

    The batched engine is built (or loaded) here, before the first item is asked for, so a caller that
    times the iteration times the streaming, not the one-off build."""
    streams = check_streams(streams)
    if not items:  # e.g. a rerun on a finished folder
        return iter(())
    multi = MultiStream.from_predictor(predictor, max_wait_ms)
    multi.engine.prepare([min(streams, len(items))])  # one bucket; the last, fewer clips are padded to it
    return _drive(multi, predictor, items, job, streams)


def _drive(multi: MultiStream, predictor: Predictor, items: Sequence[Any],
           job: Callable[[Any, Predictor], Iterator[int]], streams: int) -> Iterator[int]:
    todo: queue.Queue = queue.Queue()
    for item in items:
        todo.put(item)
    events: queue.Queue = queue.Queue()
    stop = threading.Event()

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
