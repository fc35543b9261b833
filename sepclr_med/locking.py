"""One writer per output folder: a lock file, stale locks recognised, orphan temp files removed.

``with output_lock(folder):`` creates ``folder/.sepclr-med.lock`` exclusively (``O_CREAT |
O_EXCL``, never through a link) holding the host name and process id. A second process gets a
:class:`~sepclr_med.errors.SepclrError` naming the holder. A lock left by a process that no longer
runs on this host (a SIGKILL) is stale: it is replaced, and the temporary files that process's
atomic writes left (:data:`sepclr_med.atomic.TEMP_MARK`) are removed, since nobody else writes there.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sepclr_med.atomic import TEMP_MARK
from sepclr_med.errors import SepclrError

LOCK_NAME = ".sepclr-med.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _holder(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return None


def remove_orphan_temps(folder: Path, target: str | None = None) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes under ``folder`` (of ``target``
    only, in ``folder`` itself, when given); return them."""
    removed = []
    found = Path(folder).glob(f".{target}{TEMP_MARK}*") if target else Path(folder).rglob(f".*{TEMP_MARK}*")
    for path in found:
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _create(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid()}, f)
    return True


@contextmanager
def output_lock(folder: str | os.PathLike, target: str | None = None) -> Iterator[Path]:
    """Hold ``folder``'s lock (the folder is created) for the duration of the block; with
    ``target`` (a file name in ``folder``), the lock of that one file (``.{target}.lock``).

    Raises
    ------
    SepclrError
        When another running process holds it, or the folder cannot be written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SepclrError(f"{folder} is a file, not a folder: give another --out") from None
    except OSError as exc:
        raise SepclrError(f"cannot create {folder} ({exc.strerror})") from None
    lock = folder / (f".{target}.lock" if target else LOCK_NAME)
    try:
        taken = _create(lock)
        if not taken:
            holder = _holder(lock) or {}
            same_host = holder.get("host") == socket.gethostname()
            if not same_host or _alive(int(holder.get("pid", -1))):
                where = f"process {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
                raise SepclrError(
                    f"{folder} is being written by {where} (lock {lock}); wait for it, or give "
                    "another --out. If no such process runs, delete the lock file."
                )
            lock.unlink(missing_ok=True)  # stale: its process is gone
            taken = _create(lock)
            if not taken:
                raise SepclrError(f"{folder}: another process took the lock just now; try again")
        remove_orphan_temps(folder, target)  # we are the only writer: any temp file is an orphan
    except PermissionError:
        raise SepclrError(f"cannot write in {folder} (permission denied)") from None
    except OSError as exc:
        raise SepclrError(f"cannot lock {folder} ({exc.strerror})") from None
    try:
        yield folder
    finally:
        if (_holder(lock) or {}).get("pid") == os.getpid():
            lock.unlink(missing_ok=True)


def locks_output(param: str = "out"):
    """Decorator: run the function holding the lock of the folder its ``param`` argument names."""
    import functools
    import inspect

    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            folder = signature.bind(*args, **kwargs).arguments[param]
            with output_lock(folder):
                return function(*args, **kwargs)

        return wrapper

    return decorate
