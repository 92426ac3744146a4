"""Atomic file and folder writes: the one idiom for every artefact the package writes.

Checkpoints, json, plots, videos and the dataset cache are written under a temporary name in the
destination's own folder and renamed into place (``os.replace``, atomic on POSIX), so a reader
sees either the previous complete artefact or the new complete one, never a truncated file. A
process killed mid-write (``kill -9``) leaves only a temporary whose name starts with
:data:`TEMP_PREFIX`; :func:`remove_stale_temporaries` deletes those on the next start.
"""

import contextlib
import os
import shutil
import tempfile
import time
from typing import Iterator

TEMP_PREFIX = ".pt3d-tmp-"  # every temporary this module creates starts with this


@contextlib.contextmanager
def atomic_path(path: str, fsync: bool = True) -> Iterator[str]:
    """Yields a temporary file path beside ``path``; on normal exit it is renamed to ``path``.

    The temporary keeps ``path``'s extension (tools such as matplotlib and ffmpeg pick the format
    from it). On an exception the temporary is removed and ``path`` is left untouched.

    Example::

        with atomic_path("out/plot.png") as tmp:
            fig.savefig(tmp)
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yields an empty temporary folder beside ``path``; on normal exit it is renamed to ``path``.

    ``path`` must not exist yet (a folder cannot be replaced atomically). If another process
    created ``path`` meanwhile, the temporary is dropped and that folder is kept. On an exception
    the temporary is removed.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=parent)
    try:
        yield tmp
        try:
            os.rename(tmp, path)
        except OSError:
            if not os.path.isdir(path):  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(folder: str, older_than_s: float = 0.0) -> int:
    """Deletes the temporaries a killed writer left in ``folder`` (not recursive); returns how many.

    ``older_than_s`` spares temporaries younger than that, for folders another live process may be
    writing into at the same time.
    """
    if not os.path.isdir(folder):
        return 0
    removed, now = 0, time.time()
    for name in os.listdir(folder):
        if not name.startswith(TEMP_PREFIX):
            continue
        full = os.path.join(folder, name)
        try:
            if now - os.lstat(full).st_mtime < older_than_s:
                continue
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.remove(full)
            removed += 1
        except FileNotFoundError:
            continue
    return removed
