"""Saving and loading nets as ``.npz`` files, atomically."""
import os
import tempfile
import zipfile
import zlib

import numpy as np

FORMAT = "fastdnn-mlp"
VERSION = 1


def _unnamed_file(folder):
    """A file descriptor of an unnamed file in ``folder`` (Linux ``O_TMPFILE``), or
    ``None`` where the platform or the file system has none."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY, 0o666)
    except OSError:  # e.g. a file system without O_TMPFILE support
        return None


def _write(f, arrays):
    np.savez(f, format=np.array(FORMAT), version=np.array(VERSION), **arrays)
    f.flush()
    os.fsync(f.fileno())


def _name_unnamed(f, folder):
    """Give the unnamed file ``f`` a temporary name in ``folder``; ``None`` if it cannot.

    ``linkat(..., AT_SYMLINK_FOLLOW)`` on ``/proc/self/fd/N``: passing ``dst_dir_fd``
    makes Python call linkat (plain ``link`` does not follow the /proc link).
    """
    name = f".fastdnn-{os.getpid()}-{id(f):x}.npz.tmp"
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.link(f"/proc/self/fd/{f.fileno()}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    return os.path.join(folder, name)


def save_npz(path, arrays):
    """Write ``arrays`` to ``path`` via a temporary file and an atomic rename.

    A crash or error mid-write leaves any earlier file at ``path`` untouched and no
    partial file behind.  On Linux the data is written to an unnamed file (``O_TMPFILE``),
    which a killed process leaves nowhere; it gets a name only when complete, for the
    instant before the rename (with ``mkstemp`` alone, 2 of 6 SIGKILLs during a save left
    a 10-80 MB ``.tmp`` file behind).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    fd = _unnamed_file(folder)
    if fd is not None:
        with os.fdopen(fd, "wb") as f:
            _write(f, arrays)
            tmp = _name_unnamed(f, folder)
    try:
        if tmp is None:  # no O_TMPFILE here: a named temporary file
            fd, tmp = tempfile.mkstemp(prefix=".fastdnn-", suffix=".npz.tmp", dir=folder)
            with os.fdopen(fd, "wb") as f:
                _write(f, arrays)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise


def load_npz(path, keys):
    """Read a file written by :func:`save_npz`; return a dict of ``keys``.

    Raises ``ValueError`` for a corrupt file or one that fastdnn did not write.
    """
    path = os.fspath(path)
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path!r} is not a readable fastdnn model file ({exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!r} holds a single array, not a fastdnn model file")
    with data:
        if "format" not in data.files or str(data["format"]) != FORMAT:
            raise ValueError(f"{path!r} is not a fastdnn model file")
        missing = [k for k in ("version", *keys) if k not in data.files]
        if missing:
            # A damaged member name reads as a missing one: say corrupt when the archive
            # fails its own integrity check (names and checksums).
            if data.zip.testzip() is not None:
                raise ValueError(f"{path!r} is corrupt (it fails the zip integrity check)")
            raise ValueError(f"{path!r} is missing {', '.join(missing)}")
        try:
            version = int(data["version"])
        except (TypeError, ValueError):
            raise ValueError(f"{path!r} has an unreadable format version") from None
        if version > VERSION:
            raise ValueError(f"{path!r} was written by a newer fastdnn (format {version})")
        try:
            return {k: data[k] for k in keys}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise ValueError(f"{path!r} is corrupt ({exc})") from None
