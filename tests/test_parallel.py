"""pipeline/parallel.py: runs spread over worker threads come back in order, errors reach
the caller, and only an engine whose sessions may be run from several threads gets workers."""

from __future__ import annotations

import threading
import time

import pytest

from audio_cli.pipeline.parallel import Workers, engine_threads, worker_count


@pytest.mark.parametrize("count", [1, 2, 3])
def test_map_keeps_the_items_order_whichever_finishes_first(count):
    workers = Workers(count)
    names = set()

    def slow_first(item):
        time.sleep(0.02 * (5 - item))  # the first items finish last
        names.add(threading.current_thread().name)
        return item * item

    assert workers.map(slow_first, range(5)) == [0, 1, 4, 9, 16]
    if count == 1:
        assert names == {threading.current_thread().name}  # no pool: the caller's thread
    else:
        assert threading.current_thread().name not in names
    workers.close()


@pytest.mark.parametrize("count", [1, 2])
def test_an_error_in_a_worker_is_raised_to_the_caller(count):
    workers = Workers(count)

    def fails(item):
        raise ValueError(f"bad {item}")

    done = workers.submit(fails, 7)
    with pytest.raises(ValueError, match="bad 7"):
        done.result()
    with pytest.raises(ValueError, match="bad"):
        workers.map(fails, [1, 2])
    assert workers.submit(abs, -3).result() == 3
    workers.close()


def test_only_onnx_runtime_is_run_from_several_threads(monkeypatch):
    monkeypatch.setattr("audio_cli.pipeline.parallel.usable_cpus", lambda: 4)
    assert worker_count("onnx", None) == 4 and engine_threads("onnx", None) == 1
    assert worker_count("onnx", 3) == 3 and engine_threads("onnx", 3) == 1
    assert worker_count("onnx", 1) == 1 and engine_threads("onnx", 1) == 1
    # MLX and Core ML spread each run themselves: one caller, the threads they were given
    assert worker_count("mlx", 3) == 1 and engine_threads("mlx", 3) == 3
    assert worker_count("coreml", None) == 1 and engine_threads("coreml", None) is None
