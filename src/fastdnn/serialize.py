"""Saving and loading nets as ``.npz`` files, atomically."""
import os
import tempfile
import zipfile
import zlib

import numpy as np

FORMAT = "fastdnn-mlp"
VERSION = 1


def save_npz(path, arrays):
    """Write ``arrays`` to ``path`` via a temporary file and an atomic rename.

    A crash or error mid-write leaves any earlier file at ``path`` untouched and no
    partial file behind.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastdnn-", suffix=".npz.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, format=np.array(FORMAT), version=np.array(VERSION), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
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
