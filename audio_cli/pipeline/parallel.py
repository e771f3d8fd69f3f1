"""Several runs of one engine at once, from threads, on a CPU.

ONNX Runtime spreads one run over its intra-op threads, which pays for large operators but
not for the small convolutions of a speaker network or a segmentation chunk: on 2 CPUs,
CAM++ over 200 clips (0.6-10 s) took 7.1 s with 1 thread, 5.0 s with 2, and 3.8 s as two
runs at once of one session with 1 thread (bench/RESULTS.md, section (k)). A session may be
run from several threads at once; with 1 intra-op thread each run stays on its caller's
thread. So work that splits into independent runs (chunks, clips) goes to `Workers`, and the
engines are opened with one thread each (`engine_threads`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from engines import resolve_engine_name

T = TypeVar("T")
R = TypeVar("R")

CONCURRENT_ENGINES = ("onnx",)  # engines whose sessions may be run from several threads


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the platform tells, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def worker_count(engine: str, threads: int | None) -> int:
    """Threads that run `engine` at once: `threads` (default: the usable CPUs) for an engine
    whose runs may overlap, else 1 (that engine spreads each run over `threads` itself)."""
    if resolve_engine_name(engine) not in CONCURRENT_ENGINES:
        return 1
    return max(1, threads or usable_cpus())


def engine_threads(engine: str, threads: int | None) -> int | None:
    """The intra-op threads to open `engine` with when its runs go through Workers."""
    return 1 if worker_count(engine, threads) > 1 else threads


class Workers:
    """A pool of `count` threads (none for 1: everything runs on the caller's thread)."""

    def __init__(self, count: int):
        self.count = count
        self._pool = ThreadPoolExecutor(count, thread_name_prefix="audio") if count > 1 else None

    def submit(self, fn: Callable[..., R], *args) -> Future:
        """fn(*args) on a worker (run at once, on the caller's thread, without a pool)."""
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        done: Future = Future()
        try:
            done.set_result(fn(*args))
        except BaseException as error:  # re-raised by result(), as from a pool
            done.set_exception(error)
        return done

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """[fn(item) for item in items], run on the workers, in the items' order."""
        if self._pool is None:
            return [fn(item) for item in items]
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
