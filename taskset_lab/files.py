"""Files several processes may write at once: atomic writes and claims.

* :func:`write_text_atomic`: a file appears whole or not at all; its temporary name is unique
  to the writer (host, pid, a random tag), so two processes never write the same ``.tmp``.
* claims: a job (a curve store's part, a TRANSFER trial) is computed only by the process
  holding its claim, an exclusive ``fcntl`` lock on a ``.claim`` file. The OS drops the lock
  when its holder exits or is killed, so a dead holder never blocks anyone; the files such a
  holder leaves behind are removed by :func:`clear_stale_claims`.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

_HELD: dict[str, int] = {}  # claim file -> open descriptor holding its lock (this process)


def temporary_name(path: Path, keep_suffix: bool = False) -> Path:
    """A hidden sibling of ``path`` no other writer uses (``.<name>.<host>.<pid>.<tag>.tmp``;
    with ``keep_suffix`` the name ends in ``path``'s suffix, for writers that read the format
    from it)."""
    tag = f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(3)}"
    if keep_suffix:
        return path.with_name(f".{path.stem}.{tag}.tmp{path.suffix}")
    return path.with_name(f".{path.name}.{tag}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; renamed onto ``path`` when the
    block ends without an error, removed otherwise (the old file survives a failure)::

        with atomic_path(out / "curve.csv") as tmp:
            frame.to_csv(tmp, index=False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path, keep_suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a unique temporary file, then a rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_csv_atomic(path: str | os.PathLike, frame: Any) -> Path:
    """Write a pandas ``frame`` (no index column) to ``path`` atomically."""
    return write_text_atomic(path, frame.to_csv(index=False))


def claim(path: str | os.PathLike, done: Callable[[], bool] = lambda: False) -> bool:
    """Take the claim at ``path`` for this process: False when another live process holds it
    or the job is ``done()`` (checked under the lock: finished by a holder before us).
    :func:`release` gives it back."""
    import fcntl

    path = Path(path)
    if str(path) in _HELD:
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        try:  # the holder before us may have removed the file: lock the one at the path
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    _HELD[str(path)] = fd
    if done():
        release(path)
        return False
    os.ftruncate(fd, 0)
    os.write(fd, f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
    return True


def release(path: str | os.PathLike) -> None:
    """Give back this process's claim at ``path`` (nothing if it holds none)."""
    path = Path(path)
    fd = _HELD.pop(str(path), None)
    if fd is None:
        return
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def clear_stale_claims(folder: str | os.PathLike, suffix: str = ".claim") -> list[str]:
    """Remove the claim files in ``folder`` no live process holds; returns their names
    without ``suffix``.

    A claim file outlives its holder when the holder was killed after finishing its job but
    before releasing the claim. Its lock died with the holder, so the file blocks nobody,
    but it would say a job is running when nothing is. A file whose lock can be taken is
    stale: it is removed under that lock (a process that opens it afterwards sees a different
    inode at the path and starts over, as in :func:`claim`). Claims held by this process or by
    another live one are left alone.
    """
    import fcntl

    folder = Path(folder)
    if not folder.is_dir():
        return []
    cleared = []
    for path in sorted(folder.glob(f"*{suffix}")):
        if str(path) in _HELD:  # ours (fcntl locks are per process: we could "take" it again)
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except (FileNotFoundError, PermissionError):
            continue
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                continue  # a live holder
            raise
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
                cleared.append(path.name[: -len(suffix)])
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    return cleared
