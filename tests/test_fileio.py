import os
import threading
import time

import pytest

from mcaclip.fileio import WriteError, WriterPool, atomic_write, current_umask


def _write_text(path, text):
    atomic_write(path, lambda tmp: open(tmp, "w").write(text))


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_writer_pool_writes_every_file(tmp_path, threads):
    with WriterPool(threads, max_pending=4) as pool:
        for i in range(20):
            pool.submit(tmp_path / f"{i}.txt", _write_text, str(i))
    assert sorted(int(p.stem) for p in tmp_path.iterdir()) == list(range(20))
    assert all(p.read_text() == p.stem for p in tmp_path.iterdir())


def test_writer_pool_bounds_pending_writes(tmp_path):
    release = threading.Event()
    started = []

    def slow(path, i):
        started.append(i)
        release.wait(10)

    pool = WriterPool(1, max_pending=2)
    pool.submit(tmp_path / "a", slow, 0)
    pool.submit(tmp_path / "b", slow, 1)
    blocked = threading.Thread(target=pool.submit, args=(tmp_path / "c", slow, 2))
    blocked.start()
    time.sleep(0.3)
    assert blocked.is_alive()  # a third write waits for a free slot
    release.set()
    blocked.join(10)
    assert not blocked.is_alive()
    pool.close()
    assert sorted(started) == [0, 1, 2]


def test_writer_pool_failure_is_one_line_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"could not be written .*choose another --out"):
        with WriterPool(2) as pool:
            pool.submit(tmp_path / "ok.txt", _write_text, "fine")
            pool.submit(tmp_path / "file" / "under-a-file.txt", _write_text, "no")
    assert (tmp_path / "ok.txt").read_text() == "fine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "ok.txt"]  # no temp files


def test_writer_pool_finishes_queued_writes_when_the_caller_fails(tmp_path):
    with pytest.raises(RuntimeError, match="edit failed"):
        with WriterPool(2) as pool:
            for i in range(6):
                pool.submit(tmp_path / f"{i}.txt", _write_text, str(i))
            raise RuntimeError("edit failed")
    assert len(list(tmp_path.iterdir())) == 6


def test_umask_read_under_concurrent_writes(tmp_path):
    before = os.umask(0o027)
    try:
        with WriterPool(4, max_pending=8) as pool:
            for i in range(40):
                pool.submit(tmp_path / f"{i}.txt", _write_text, "x")
        assert current_umask() == 0o027
        assert os.umask(0o027) == 0o027  # left as it was
        modes = {p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
        assert modes == {0o640}
    finally:
        os.umask(before)


def test_umask_without_proc(monkeypatch):
    """Where /proc/self/status cannot be read: set and restored under a lock, unchanged."""
    import builtins

    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        if str(path) == "/proc/self/status":
            raise OSError("no /proc here")
        return real_open(path, *args, **kwargs)

    before = os.umask(0o037)
    try:
        monkeypatch.setattr(builtins, "open", no_proc)
        masks = []
        threads = [threading.Thread(target=lambda: masks.append(current_umask())) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert masks == [0o037] * 8
        assert os.umask(0o037) == 0o037
    finally:
        os.umask(before)
