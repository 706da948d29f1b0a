"""Files that must survive faults: atomic writes, a free-space check, one clear error for a full or read-only
disk, and the exclusive lock of a run directory.

A file is written to a temporary name in its own directory and renamed over the target (``os.replace``), so a
reader sees the old file or the new one, never half of one; a kill or a full disk leaves at most a
``.tmp-<pid>-<name>`` file (removed on failure when the process is still alive to do so). The free-space check
runs before writing, because HDF5 on a full disk can leave a torn file or, as seen on these machines, take the
process down.

No TensorFlow here: the training and zoo layers call it with what to write.
"""
import contextlib
import errno
import fcntl
import os
import pathlib
import shutil

#: Slack added to an estimated file size: HDF5's headers and B-trees, a JSON card, file-system blocks.
SIZE_MARGIN = 1.1
SIZE_OVERHEAD = 256 << 10
LOCK_FILE = "run.lock"
_DISK_ERRNOS = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied"}


class DiskError(RuntimeError):
    """A file could not be written (full disk, read-only file system, no permission); names the path."""


class RunDirBusy(RuntimeError):
    """Another process holds the lock of a run directory; names its pid."""


def disk_error(path, error, doing="write"):
    """``error`` (an OSError) as a DiskError naming ``path`` and what went wrong, in one line."""
    code = getattr(error, "errno", None)
    reason = _DISK_ERRNOS.get(code) or (error.strerror if getattr(error, "strerror", None) else str(error))
    return DiskError(f"could not {doing} {path}: {reason.splitlines()[0] if reason else type(error).__name__}")


def needed_bytes(payload_bytes):
    """The space to ask for before writing a file of about ``payload_bytes``."""
    return int(payload_bytes * SIZE_MARGIN) + SIZE_OVERHEAD


def check_free_space(directory, payload_bytes):
    """Raise DiskError if ``directory`` has less free space than ``needed_bytes(payload_bytes)``."""
    directory = pathlib.Path(directory)
    try:
        stat = os.statvfs(directory)
    except OSError as error:
        raise disk_error(directory, error, "check the free space of") from None
    free, need = stat.f_bavail * stat.f_frsize, needed_bytes(payload_bytes)
    if free < need:
        raise DiskError(f"not enough space in {directory}: about {need / 1e6:.1f} MB needed, "
                        f"{free / 1e6:.1f} MB free (nothing was written)")


def make_dirs(directory):
    """``mkdir -p`` whose failure (read-only, no permission) is a DiskError naming the directory."""
    try:
        pathlib.Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise disk_error(directory, error, "create") from None


def check_writable(directory):
    """Create ``directory`` if needed and prove it writable with a throw-away file, so a read-only or full disk
    is named before any work starts instead of after it."""
    make_dirs(directory)
    probe = temp_path(pathlib.Path(directory) / "write-probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.remove(probe)
    except OSError as error:
        raise disk_error(directory, error, "write to") from None


def temp_path(path):
    """A temporary sibling of ``path`` that keeps its name as the suffix (Keras wants ``.weights.h5``)."""
    path = pathlib.Path(path)
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def atomic_write(path, write, payload_bytes=0):
    """Write ``path`` by ``write(temporary_path)`` and rename it into place; returns ``path``.

    payload_bytes: the expected size, checked against the free space first. Any OSError on the way (ENOSPC,
    EROFS, EACCES, ...) becomes one DiskError naming ``path``; the temporary file is removed and the old ``path``,
    if any, is untouched.
    """
    path = pathlib.Path(path)
    make_dirs(path.parent)
    check_free_space(path.parent, payload_bytes)
    temporary = temp_path(path)
    try:
        write(temporary)
        _fsync(temporary)
        os.replace(temporary, path)
        _fsync(path.parent)
    except OSError as error:
        raise disk_error(path, error) from None
    finally:
        with contextlib.suppress(OSError):
            os.remove(temporary)
    return path


def atomic_write_text(path, text):
    """``atomic_write`` of a UTF-8 text file."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda temporary: pathlib.Path(temporary).write_bytes(data), len(data))


def _fsync(path):
    """Flush a file (or a directory's entries) to disk, so a rename never publishes data still in memory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_dir(staged, target, overwrite=False):
    """Move the finished directory ``staged`` to ``target`` in one rename.

    An existing ``target`` (other than an empty directory, which the rename replaces) is refused
    (FileExistsError) unless ``overwrite``; then it is first renamed aside to
    ``.replaced-<pid>-<name>`` and deleted once the new one is in place (a crash between the two renames leaves
    the old entry there, not lost).
    """
    staged, target = pathlib.Path(staged), pathlib.Path(target)
    aside = target.with_name(f".replaced-{os.getpid()}-{target.name}")
    try:
        for path in staged.rglob("*"):
            if path.is_file():
                _fsync(path)
        if target.exists() and not _empty_dir(target):
            if not overwrite:
                raise FileExistsError(f"{target} already exists (nothing was replaced)")
            os.rename(target, aside)
        os.rename(staged, target)
        _fsync(target.parent)
    except OSError as error:
        if isinstance(error, FileExistsError):
            raise
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):  # another writer published it after the check above
            raise FileExistsError(f"{target} appeared while this one was being written (nothing was replaced)")
        raise disk_error(target, error) from None
    shutil.rmtree(aside, ignore_errors=True)
    return target


def _empty_dir(path):
    return path.is_dir() and not any(path.iterdir())


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold an exclusive ``flock`` on ``run_dir/run.lock`` (which holds the holder's pid) for the block.

    A second holder is refused at once with RunDirBusy naming the first one's pid. The kernel drops the lock when
    the holding process ends, however it ends, so a crashed run never leaves the directory locked (the file and
    its stale pid stay; the lock is what counts).
    """
    run_dir = pathlib.Path(run_dir)
    make_dirs(run_dir)
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise disk_error(path, error, "create the lock file") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise RunDirBusy(f"{run_dir} is in use by another run (pid {holder}); wait for it to finish or choose "
                             f"another --run-dir") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as error:
            raise disk_error(path, error) from None
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
