"""Exclusive lock files: one simgan process at a time per run folder or ``OUT.partial``.

A lock is a small JSON file (``{"simgan": 1, "pid": N, "host": "..."}``) held with ``flock``
while the process works. The kernel drops the ``flock`` when the process dies however it dies
(kill -9 included), so a lock file whose ``flock`` can be taken is stale: its owner is gone. The
next process takes it over and says so. A second live process gets
``simgan: error: PATH is in use by pid N (host H)``.

The same file doubles as the *ownership marker* of an ``OUT.partial`` folder (see
:class:`simgan.datasets.folder.DatasetWriter`): simgan only ever removes or reuses a ``.partial``
folder that holds this file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from .errors import SimganError

LOCK_FILE = ".simgan-lock"


class LockBusy(SimganError):
    """The lock is held by a live process (a job-array task may wait for it and try again)."""


def _describe(info: dict) -> str:
    pid, host = info.get("pid", "?"), info.get("host")
    return f"pid {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")


def read_lock_info(path: Path) -> dict | None:
    """The JSON of a simgan lock file, or None when ``path`` is not one."""
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(4096) or b"null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("simgan") == 1 else None


class Lock:
    """An exclusive lock on ``target`` (a folder), held through ``target/.simgan-lock``.

    ``acquire(create=True)`` creates the lock file if missing; ``create=False`` only locks an
    existing one (used for ``.partial`` folders, whose lock file is also their ownership
    marker). ``echo`` is told when a stale lock of a dead process is taken over.
    """

    def __init__(self, target: str | os.PathLike, *, what: str | None = None, echo=None):
        self.target = Path(target)
        self.path = self.target / LOCK_FILE
        self.what = what or str(self.target)
        self.echo = echo if echo is not None else (lambda msg: print(f"simgan: {msg}", file=sys.stderr))
        self.fd: int | None = None

    # -- acquiring ----------------------------------------------------------------------------
    def acquire(self, *, create: bool = True) -> Lock:
        while True:
            flags = os.O_RDWR | (os.O_CREAT if create else 0)
            try:
                fd = os.open(self.path, flags, 0o644)
            except FileNotFoundError:
                raise SimganError(f"{self.what} is not a folder simgan created (no {LOCK_FILE})") from None
            except OSError as exc:
                raise SimganError(f"cannot lock {self.what}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    info = read_lock_info(self.path) or {}
                    raise LockBusy(f"{self.what} is in use by {_describe(info)}; wait for it to finish "
                                   f"or stop it") from None
                raise SimganError(f"cannot lock {self.what}: {exc.strerror or exc}") from None
            # The file may have been unlinked (released) between open and flock: lock the new one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                if not create:
                    raise SimganError(f"{self.what} was removed while simgan was opening it")
                continue
            break
        self.fd = fd
        old = os.read(fd, 4096)
        if old.strip():
            try:
                info = json.loads(old)
            except ValueError:
                info = {}
            if isinstance(info, dict) and info.get("pid"):
                if info.get("pid") != os.getpid() or info.get("host") != socket.gethostname():
                    self.echo(f"took over the stale lock of {self.what} from {_describe(info)}, which is no "
                              f"longer running")
        self._write_info()
        return self

    def _write_info(self) -> None:
        data = json.dumps({"simgan": 1, "pid": os.getpid(), "host": socket.gethostname()}).encode()
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, data)
        os.fsync(self.fd)

    # -- releasing ----------------------------------------------------------------------------
    def release(self, *, remove: bool = True) -> None:
        """Drop the lock; ``remove`` deletes the lock file first (a run folder's lock goes away
        when its training ends, so the next ``--resume`` takes over nothing)."""
        if self.fd is None:
            return
        if remove:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        os.close(self.fd)
        self.fd = None

    def __del__(self) -> None:
        # Like the death of the process: the flock goes, the file (a stale lock) stays.
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def __enter__(self) -> Lock:
        if self.fd is None:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
