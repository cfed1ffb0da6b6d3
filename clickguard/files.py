"""Files clickguard keeps in its state and certs directories, private whatever the umask.

The audit log and store hold full URLs (one-time sign-in and reset links among
them), users and recipients; the state directory also keeps the hosts learned
as Thingbots, and certs/ the keys. A service started with umask 022 would make
them world-readable, one started with 000 world-writable. So a file created
here is mode 0640 (owner writes, the group reads: a log shipper or a report
job) and a directory 0750, whatever the umask. A file that exists already (from
an older version, or created by logrotate) keeps its owner, group and
owner bits but loses group write and every bit for others, as if created under
umask 027; a directory that exists is left as it is (it may be /var/lib).

SQLite creates a database's -wal and -shm files with the database file's mode,
so a store created with `open_private` first is private with its companions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from clickguard.errors import ClickguardError, FileAccessError

logger = logging.getLogger(__name__)

FILE_MODE = 0o640
DIR_MODE = 0o750
NOT_PRIVATE = 0o027  # group write, and anything for others


def private_dir(path: Path) -> None:
    """Create a directory and its missing parents with mode 0750; OSError if it cannot be one."""
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # another process made it meanwhile: its mode is its own
        os.chmod(directory, DIR_MODE)  # mkdir's mode went through the umask


def make_private(fd: int, name: Path | str) -> None:
    """Take group write and every bit for others off an open regular file we own (logged when it changes)."""
    info = os.fstat(fd)
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode) or not mode & NOT_PRIVATE or info.st_uid != os.geteuid():
        return  # a device (/dev/full), already private, or someone else's file to keep as it is
    os.fchmod(fd, mode & ~NOT_PRIVATE)
    logger.info("%s: mode %04o made %04o (it holds what only clickguard's group may read)",
                name, mode, mode & ~NOT_PRIVATE)


def open_private(path: Path, flags: int) -> int:
    """os.open that creates the file 0640 (and its directories 0750) or makes an existing one private."""
    private_dir(path.parent)
    flags &= ~(os.O_CREAT | os.O_EXCL)
    for _attempt in range(3):  # the file may come and go between the two opens (logrotate)
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            pass
        else:
            _fchmod_or_close(fd, FILE_MODE)
            return fd
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            continue
        try:
            make_private(fd, path)
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise FileNotFoundError(2, "created and removed again while opening it", str(path))


def _fchmod_or_close(fd: int, mode: int) -> None:
    """Set a new file's mode past the umask; on failure close it and raise."""
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Replace a file in one step (write, fsync, rename, fsync the folder): 0640, or the old mode, private.

    A reader sees the old file or the new one, never half of one, and a crash
    leaves one of the two.
    """
    private_dir(path.parent)
    mode = FILE_MODE
    with contextlib.suppress(FileNotFoundError):
        old = os.stat(path)
        if stat.S_ISREG(old.st_mode):
            mode = stat.S_IMODE(old.st_mode) & ~NOT_PRIVATE
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    sync_dir(path.parent)


def sync_dir(path: Path) -> None:
    """fsync a directory, so a file created or renamed in it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def restrict_umask() -> int:
    """Make the process's umask at least 027; returns the old one. Call at start-up, before threads.

    For files others create in the process (mitmproxy's CA certificates in
    certs/), which `open_private` does not make.
    """
    old = os.umask(0o027)
    os.umask(old | NOT_PRIVATE)
    return old


def mtime(path: os.PathLike[str] | str) -> float | None:
    """A file's (or folder's) modification time, None when it cannot be read: what reloads watch."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


@contextlib.contextmanager
def user_files() -> Iterator[None]:
    """Around reading or writing files the user named: an OSError is theirs to fix (FileAccessError)."""
    try:
        yield
    except ClickguardError:
        raise
    except OSError as e:
        raise FileAccessError.of(e) from e
