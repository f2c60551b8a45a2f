"""Read ahead: the next items of an iterator made by a worker thread while the caller works on
the current one. Training reads batches from HDF5 while the step runs (``gan/training/data.py``);
preprocessing decodes photos while MTCNN runs (``preprocess/extract.py``). Both libraries
release the GIL while they work, so the reading hides behind the computing.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(items: Iterator[T], ahead: int = 1, name: str = "read-ahead") -> Iterator[T]:
    """``items`` in order, up to ``ahead`` of them made in advance by one worker thread named
    ``name`` (one worker: the iterator is never advanced from two threads at once). Memory
    holds at most ``ahead`` items besides the one in use. An exception in ``items`` is raised
    here, in its place. A caller that stops early (a stop signal, an error) closes this
    generator: no further item is asked for, the reads already asked for finish, and the
    thread has ended when ``close()`` returns."""
    with ThreadPoolExecutor(1, thread_name_prefix=name) as pool:
        pending = deque(pool.submit(next, items, _END) for _ in range(ahead))
        while (item := pending.popleft().result()) is not _END:
            pending.append(pool.submit(next, items, _END))
            yield item
