"""Atomic file writes: a temporary file beside the target, renamed into place."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from mcaclip.errors import McaError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc/self/status);
    elsewhere set and restored under a lock, so that concurrent writers (:class:`WriterPool`)
    cannot leave a wrong one behind."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``:
    readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class WriteError(McaError):
    """An output file could not be written (disk full, permissions)."""


class WriterPool:
    """File writes on ``threads`` background threads, so that encoding and writing the
    outputs of one batch overlaps the computing of the next (PNG encoding releases the GIL:
    two threads write 1.9x as fast as one on a 2-core machine). At most ``max_pending`` writes
    wait at any time (:meth:`submit` blocks beyond that), which bounds the memory held by
    queued arrays. ``threads=0`` writes in the caller's thread.

    A context manager: leaving it waits for every queued write; the first failure is raised
    as a :class:`WriteError` (by :meth:`submit` as soon as it is seen, or on leaving). Each
    write is expected to be atomic (:func:`atomic_write`), so an interrupted run leaves whole
    files or none."""

    def __init__(self, threads: int, max_pending: int = 64):
        if threads < 0 or max_pending < 1:
            raise ValueError(f"threads={threads}, max_pending={max_pending}")
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="mcaclip-write") if threads else None
        )
        self._slots = threading.BoundedSemaphore(max_pending)
        self._pending: list[Future] = []

    def submit(self, path: str | Path, write: Callable[..., object], *args) -> None:
        """Run ``write(path, *args)`` (in the background with threads)."""
        if self._pool is None:
            self._run(path, write, *args)
            return
        self._reap(block=False)
        self._slots.acquire()
        try:
            self._reap(block=False)  # a write that failed while this one waited for a slot
            future = self._pool.submit(self._run, path, write, *args)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append(future)

    def _run(self, path, write, *args) -> None:
        try:
            write(path, *args)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise WriteError(
                f"{path}: could not be written ({reason}); free some space or choose another --out"
            ) from None

    def _reap(self, block: bool) -> None:
        """Drop finished writes; raise the first failure (``block``: wait for all first)."""
        if block:
            for f in self._pending:
                if not f.cancelled():
                    f.exception()  # waits
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for f in done:
            if not f.cancelled() and f.exception() is not None:
                raise f.exception()

    def close(self, cancel: bool = False) -> None:
        """Wait for the queued writes (``cancel``: drop those not started) and stop the
        threads; raises the first failure."""
        if self._pool is None:
            return
        try:
            if cancel:
                for f in self._pending:
                    f.cancel()
            self._reap(block=True)
        except KeyboardInterrupt:  # while waiting: drop what has not started
            cancel = True
            for f in self._pending:
                f.cancel()
            raise
        finally:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None

    def __enter__(self) -> WriterPool:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        # on an error in the caller, the writes already queued still finish (each atomic)
        # unless it is an interrupt; the caller's error wins over a write failure
        if exc_type is None:
            self.close()
        else:
            try:
                self.close(cancel=exc_type is KeyboardInterrupt)
            except WriteError:
                pass
