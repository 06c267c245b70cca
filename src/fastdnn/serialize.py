"""Saving and loading nets as ``.npz`` files, atomically.

A model file holds ``format``, ``version`` and the net's own arrays, plus optional
metadata (what a caller needs to use the net again: input scaling, label names) under
keys ``meta.<name>``.  Adding metadata kept the format at version 1: readers before it
skip keys they do not ask for, and files without metadata read as an empty dict.
"""
import errno
import io
import math
import os
import re
import stat
import sys
import tempfile
import threading
import zipfile
import zlib

import numpy as np

FORMAT = "fastdnn-mlp"
VERSION = 1
META_PREFIX = "meta."
# Names stay plain so that they survive as zip member names on every platform.
_META_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


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


def _name_unnamed(f, tmp):
    """Give the unnamed file ``f`` the temporary name ``tmp`` (a path in its folder);
    whether it could.

    ``linkat(..., AT_SYMLINK_FOLLOW)`` on ``/proc/self/fd/N``: passing ``dst_dir_fd``
    makes Python call linkat (plain ``link`` does not follow the /proc link).  The
    folder is opened with ``O_PATH``, which needs no read permission (a folder of mode
    0333 raised PermissionError here, after the whole file was written).
    """
    folder, name = os.path.split(tmp)
    try:
        dir_fd = os.open(folder, getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        os.link(f"/proc/self/fd/{f.fileno()}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
    except OSError:
        return False
    finally:
        os.close(dir_fd)
    return True


def _interrupt_behind(exc, handled=None):
    """The ``KeyboardInterrupt`` that ``exc`` was raised while handling, if any: Ctrl-C
    inside ``np.savez`` came out of its zip file as ``ValueError: Can't close the ZIP
    file while there is an open writing handle``.  The chain is followed up to
    ``handled``, the exception the caller handled as the write began."""
    seen = set()
    while exc is not None and exc is not handled and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__context__
    return None


def _write_synced(f, write):
    # A KeyboardInterrupt the caller is handling (a save after Ctrl-C) is not this
    # write's: an error of the write raised in its handler has it as __context__.
    handled = sys.exc_info()[1]
    try:
        write(f)
    except Exception as exc:
        interrupt = _interrupt_behind(exc, handled)
        if interrupt is None:
            raise
        raise interrupt from None
    f.flush()
    os.fsync(f.fileno())


def write_atomic(path, write):
    """Create or replace the file ``path`` with what ``write(f)`` writes to the binary
    file ``f``, via a temporary file and an atomic rename.

    A crash or error mid-write leaves any earlier file at ``path`` untouched and no
    partial file behind.  On Linux the data is written to an unnamed file (``O_TMPFILE``),
    which a killed process leaves nowhere; it gets a name only when complete, for the
    instant before the rename (with ``mkstemp`` alone, 2 of 6 SIGKILLs during a save left
    a 10-80 MB ``.tmp`` file behind).  A file replaced keeps its mode; its owner becomes
    the writer, and a hard link to it keeps the old file (as for any atomic save).

    A device, a pipe or a descriptor's name (``/dev/null``, a FIFO, ``/dev/stdout``) is
    written where it is, appended to, as ``open()`` would reach it: renamed over, root's
    ``--out /dev/null`` made ``/dev/null`` a file, and ``CSVLogger("/dev/stdout")`` swapped
    the file a shell sent the output to for the log's header.
    """
    # Through a symbolic link to the file it names (as open() writes), keeping the mode
    # of a file replaced (a 0600 model became 0644).
    given = os.fsdecode(path)  # a bytes path met the temporary file's str name late,
    if not given:  # "cannot write '': it is a folder" (the current one)
        raise ValueError("cannot write '': the path is empty; give a file name")
    if given.endswith((os.sep, os.altsep or os.sep)):  # realpath drops it: "models/" was
        raise IsADirectoryError(f"cannot write {given!r}: it names a folder; give a file "
                                f"name")  # written as a file "models"
    path = os.path.realpath(given)  # and left that file behind
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):  # mkstemp's error named its own random file
        raise FileNotFoundError(f"cannot write {given!r}: folder {folder} does not exist")
    if os.path.isdir(path):  # the rename's error named the temporary file, after the write
        raise IsADirectoryError(f"cannot write {given!r}: it is a folder; give a file name")
    try:
        _write_atomic(given, path, folder, write)
    except OSError as exc:  # a full disk, a file size limit: "[Errno 28] No space left on
        # device" named no file, the same words for a model, a plot, a log or stdout
        if exc.errno is None or exc.filename is not None or repr(given) in str(exc):
            raise
        raise type(exc)(exc.errno, f"cannot write {given!r} ({exc.strerror or exc})") from None


def _refuse_read_only(given, path):
    """``PermissionError`` where ``path`` is a file this process may not write, as
    ``open(path, "w")`` (NumPy's, PyTorch's, Keras' saves) refuses it: renamed over, a
    model made read-only to keep it was replaced (and kept its 0444 mode)."""
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, f"cannot write {given!r}: the file is "
                                            f"read-only")


def _write_atomic(given, path, folder, write):
    """:func:`write_atomic`, its path checked: ``path`` is ``given`` resolved."""
    place = _in_place(given)  # resolved once
    if place is not None:
        # Whole, in order: a zip archive seeks back to finish its headers, which a
        # stream cannot and an O_APPEND descriptor (`>> model.npz`) sends to the end.
        data = io.BytesIO()
        write(data)
        with _open_in_place(given, place) as f:
            f.write(data.getbuffer())
        return
    _refuse_read_only(given, path)
    mode = _mode_for(path)
    fd = _unnamed_file(folder)
    if fd is not None:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            _write_synced(f, write)
            tmp = os.path.join(folder, f".fastdnn-{os.getpid()}-{id(f):x}.tmp")
            try:
                if _name_unnamed(f, tmp):
                    # Renamed at once, before the file is closed: the name exists for
                    # three system calls.  (Renamed after the close, 1 of the test's 6
                    # SIGKILLs in a CI run of 2026-11-28 left the named file behind.)
                    os.replace(tmp, path)
                    return
            except BaseException:  # Ctrl-C once the link was made (in 0.5% of the
                _unlink_quietly(tmp)  # presses during a save it left the .tmp file),
                raise  # or the rename failed
    # No O_TMPFILE here (or no writing in the folder): a named temporary file.
    try:
        fd, tmp = tempfile.mkstemp(prefix=".fastdnn-", suffix=".tmp", dir=folder)
    except OSError as exc:  # it named its own random file ("Read-only file system: .fa..")
        raise type(exc)(exc.errno, f"cannot write {given!r} ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # not on Windows
                os.fchmod(f.fileno(), mode)
            _write_synced(f, write)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _replace(tmp, path)


def written_in_place(path):
    """Whether :func:`write_atomic` writes ``path`` where it is: it exists and is not a
    regular file (a device, a FIFO), or is reached through a descriptor's name
    (``/dev/stdout``, ``/dev/fd/N``, ``/proc/<pid>/fd/N``: their link leads to a file
    another open holds)."""
    return _in_place(path) is not None


_DESCRIPTOR = re.compile(r"/(?:proc/(self|thread-self|\d+)(?:/task/\d+)?/fd|dev/fd)/(\d+)")


def _in_place(path):
    """``None`` (a regular file or none: replaced atomically), this process' descriptor
    number that ``path`` names, or ``-1`` (another file written where it is)."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # not there (or not reachable): a new file
        return None
    for _ in range(40):  # the links followed one by one (the kernel's own limit)
        path = "/" + os.path.abspath(path).lstrip("/")  # POSIX keeps a leading "//"
        named = _DESCRIPTOR.fullmatch(path)
        if named:
            own = named[1] in (None, "self", "thread-self", str(os.getpid()))
            return int(named[2]) if own else -1
        if path.startswith("/proc/") or not os.path.islink(path):
            break
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return None if regular else -1


def open_in_place(path):
    """A binary file appending to ``path`` where it is (:func:`written_in_place`), or
    ``None`` for a path to replace atomically (the path resolved once); one of
    this process' descriptors (``/dev/stdout``) is written through itself, at its own
    offset, after Python's buffered text for it (opened anew, a shell's ``> file`` had
    its later output written over the log, and the log over its earlier output)."""
    fd = _in_place(path)
    return None if fd is None else _open_in_place(path, fd)


def _open_in_place(path, fd):
    """:func:`open_in_place` for ``fd``, :func:`_in_place`'s answer for ``path``."""
    if fd < 0:
        return open(path, "ab")
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and stream.fileno() == fd:
                stream.flush()
        except (AttributeError, OSError, ValueError):  # replaced, or closed
            pass
    return os.fdopen(os.dup(fd), "wb")


def _mode_for(path):
    """The permission bits for the file written at ``path``: those of the file there,
    or what ``open()`` would give a new one (``0o666`` less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask():
    try:  # Linux 4.7+: read without changing it
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # elsewhere it is only read by setting it
        umask = os.umask(0o022)
        os.umask(umask)
    return umask


_UMASK_LOCK = threading.Lock()


def _replace(tmp, path):
    """``os.replace(tmp, path)``; ``tmp`` removed if that fails."""
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def save_npz(path, arrays, metadata=None):
    """Write a model file: ``arrays`` and ``metadata`` (see :func:`check_metadata`),
    atomically (:func:`write_atomic`)."""
    arrays = dict(arrays)
    for name, value in check_metadata(metadata).items():
        arrays[META_PREFIX + name] = value
    write_atomic(path, lambda f: _write(f, arrays))


def check_metadata(metadata):
    """Return ``metadata`` as a dict of NumPy arrays that load back as they went in.

    Parameters
    ----------
    metadata : dict or None
        Names (letters, digits, ``_``, ``.``, ``-``; not starting with ``.`` or ``-``,
        not ending in ``.npy``) to values NumPy turns into arrays of booleans, numbers or text (lists, scalars,
        strings, arrays).  ``None`` is an empty dict.

    Raises
    ------
    TypeError
        ``metadata`` is not a dict, a name is not a string, or a value is not an array
        of numbers or text (objects would need pickle, which loading refuses).
    ValueError
        A name is empty or holds other characters.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict of arrays; got {type(metadata).__name__}")
    out = {}
    for name, value in metadata.items():
        if not isinstance(name, str):
            raise TypeError(f"metadata names must be strings; got {name!r}")
        if not _META_NAME.match(name):
            raise ValueError(f"metadata name {name!r} must be letters, digits, '_', '.' "
                             f"or '-', not starting with '.' or '-'")
        if name.endswith(".npy"):  # NumPy's npz reader takes "x.npy" for "x"
            raise ValueError(f"metadata name {name!r} must not end in '.npy'")
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as exc:  # e.g. ragged lists
            raise TypeError(f"metadata {name!r} is not an array ({exc})") from None
        if array.dtype.kind not in "biufcU" or not _reads_back(array.dtype):
            raise TypeError(f"metadata {name!r} must hold booleans, numbers or text; "
                            f"got dtype {array.dtype}")
        out[name] = array
    return out


def _reads_back(dtype):
    """Whether a ``.npy`` header of ``dtype`` reads back as ``dtype``: ml_dtypes'
    float8_e5m2 is of kind 'f' but writes the descriptor '<f1', which no reader takes
    (the whole model file was then refused as corrupt)."""
    try:
        return np.lib.format.descr_to_dtype(np.lib.format.dtype_to_descr(dtype)) == dtype
    except (TypeError, ValueError):
        return False


def write_figure(fig, path, dpi=110):
    """Write the matplotlib figure ``fig`` to ``path`` atomically (:func:`write_atomic`),
    in the format its extension names (PNG without one: ``savefig`` to a path would add
    ``.png`` to the name), and close it."""
    import matplotlib.pyplot as plt

    fmt = os.path.splitext(os.fsdecode(path))[1][1:].lower() or "png"
    try:
        write_atomic(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
    finally:
        plt.close(fig)


def check_writable(path):
    """Raise ``OSError`` naming the problem if :func:`write_atomic` cannot write ``path``
    (``ValueError`` if it is empty).

    Checked by creating (and dropping) a temporary file where the real one will be
    written, the only test that also holds for root, ACLs and read-only mounts, so that
    a long run fails before it starts rather than at its end.
    """
    path = os.fspath(path)
    if not path:  # realpath('') is the current folder, which passed: a run lost at the end
        raise ValueError("the path is empty; give a file name")
    # The folder write_atomic writes in: that of the file a symbolic link names.
    folder = os.path.dirname(os.path.realpath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder")
    if path.endswith((os.sep, os.altsep or os.sep)):  # realpath would drop the separator
        raise IsADirectoryError(f"{path} names a folder, not a file")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder} does not exist")
    if written_in_place(path):  # no file is made beside it (/dev/null's folder is root's)
        if not os.access(path, os.W_OK):
            raise PermissionError(f"cannot write {path}: permission denied")
        return
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise type(exc)(f"cannot write in folder {folder} ({exc.strerror or exc})") from None
    _refuse_read_only(path, os.path.realpath(path))


#: Bytes of a zip archive's end record without its comment.
_END_RECORD = 22
#: What reading a damaged archive raises: a bad checksum, header or member name
#: (``BadZipFile``), a truncated file (``EOFError``), an offset past its end
#: (``OSError``), a damaged stream (``zlib.error``), flag bits that read as encryption
#: (``RuntimeError``) or as an unknown compression method (``NotImplementedError``), a
#: damaged ``.npy`` header (``ValueError``).  One flipped bit of a model file raised each.
DAMAGE = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError,
          NotImplementedError)


def load_npz(path, keys, optional=(), checks=None):
    """Read a file written by :func:`save_npz`.

    Each member's header is read first, and a member whose data is not the size its
    header declares is refused as corrupt before it is read (a 128-byte member that
    declared 10**12 float64s raised MemoryError: 7.3 TiB).  ``checks``: ``{key: f}``,
    ``f(arrays, shape)`` raises ``ValueError`` where member ``key``'s declared ``shape``
    does not go with the other arrays (read first), before it is read (a 1 MB file of
    2**27 zeros took 1.1 GB and 8 s to be refused).

    Returns
    -------
    arrays : dict
        The arrays named in ``keys``, and those named in ``optional`` that the file has
        (keys added after format version 1 was fixed: older readers skip them).
    metadata : dict
        The file's metadata by name, without the ``meta.`` prefix (empty when it has none).

    Raises
    ------
    ValueError
        For a corrupt file or one that fastdnn did not write.
    """
    path = os.fspath(path)
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except DAMAGE as exc:
        # NumPy's advice for a pickle (allow_pickle=True) is not for a model file: fastdnn
        # writes none, and loading one would run what the file says.
        reason = exc
        if "allow_pickle" in str(exc):  # NumPy takes any unknown bytes for a pickle
            reason = ("it holds pickled objects" if _starts_like_a_pickle(path) else
                      "it is no .npz archive: a model file is a zip that MLP.save writes")
        raise ValueError(f"{path!r} is not a readable fastdnn model file ({reason})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!r} holds a single array, not a fastdnn model file")
    with data:
        try:
            return _read(path, data, keys, optional, checks or {})
        except _Refused as exc:
            raise ValueError(str(exc)) from None
        except DAMAGE as exc:
            raise ValueError(f"{path!r} is corrupt ({exc})") from None


def _starts_like_a_pickle(path):
    """Whether the file begins as a pickle (protocol 2 and up: ``\x80`` and the protocol)
    or an ``.npy`` array (of objects, then) does: a CSV given as the model was told it
    "holds pickled objects"."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return False
    return head == b"\x93NUMPY" or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


_CHUNK = 1 << 20  # bytes of a member read at a time


class _Refused(Exception):
    """A readable archive that is not a model file this fastdnn loads (the message)."""


def _member_info(data, key):
    """The zip entry that ``data[key]`` reads."""
    # As NpzFile names them: "X.npy" is key "X", and so is a member named "X" (another
    # tool's archive: getinfo("X.npy") raised KeyError).
    name = key + ".npy" if key + ".npy" in data.zip.NameToInfo else key
    return data.zip.getinfo(name)


def declared_member(data, key, read=False):
    """``(shape, dtype)`` that member ``key``'s ``.npy`` header declares, read without its
    data (``None`` for a header NumPy's own reader is left to: version 3); ``BadZipFile``
    where its data is not that many bytes.  With ``read``, ``(shape, dtype, array)``: the
    member read in the same pass (``array`` is ``None`` where the header is NumPy's to
    read), so that its header is parsed once: parsed again by ``data[key]``, a model of
    5,000 metadata keys took 2.0x as long to load (AMD EPYC Zen 4)."""
    info = _member_info(data, key)
    fmt = np.lib.format
    with data.zip.open(info) as f:
        version = fmt.read_magic(f)
        read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
        if version not in read_header:
            return (None, None, None) if read else None
        shape, fortran_order, dtype = read_header[version](f)
        payload = info.file_size - f.tell()
        if not dtype.hasobject and math.prod(shape) * dtype.itemsize != payload:
            raise zipfile.BadZipFile(f"member {key} declares {shape} of {dtype}, and holds "
                                     f"{payload:,} bytes")
        if not read:
            return shape, dtype
        if dtype.hasobject or dtype.itemsize == 0:  # NumPy's to refuse or read
            return shape, dtype, None
        array = np.empty(math.prod(shape), dtype)
        raw = array.view(np.uint8)
        for start in range(0, payload, _CHUNK):  # no second copy of a large member
            chunk = f.read(min(_CHUNK, payload - start))
            if len(chunk) != min(_CHUNK, payload - start):
                raise EOFError(f"member {key} ends early")
            raw[start:start + len(chunk)] = np.frombuffer(chunk, np.uint8)
    return shape, dtype, (array.reshape(shape[::-1]).T if fortran_order else
                          array.reshape(shape))


def _read(path, data, keys, optional, checks):
    """:func:`load_npz`'s arrays and metadata from the open archive ``data``; raises
    :class:`_Refused` for a file it does not load, and what :data:`DAMAGE` names for a
    damaged one."""
    if "format" not in data.files or str(data["format"]) != FORMAT:
        raise _Refused(f"{path!r} is not a fastdnn model file")
    # A damaged index would read as a member missing, or for an optional one as a net
    # without it (another l2, no metadata): zipfile checks neither the count of members
    # its end record states (a damaged length swallows the entries after it) nor the
    # names in the index against each member's own header until it opens the member
    # (which reads the header only).
    listed = _listed_members(path)
    if listed is not None and listed != len(data.zip.infolist()):
        raise zipfile.BadZipFile(f"its index lists {listed} members, "
                                 f"{len(data.zip.infolist())} read")
    # BadZipFile where the two names differ; the members read below are checked as
    # they are opened.
    wanted = (*keys, *(o for o in optional if o in data.files))
    meta = [k for k in data.files if k.startswith(META_PREFIX)]
    files = set(data.files)  # a list: 'in' it per key took 2.4 s of 3.3 at 20,000 keys
    opened = {id(_member_info(data, k)) for k in (*wanted, *meta) if k in files}
    for info in data.zip.infolist():
        if id(info) not in opened:
            data.zip.open(info).close()
    # The version before the keys: a later format may lack some of this one's (a file of
    # format 2 without theta was 'missing theta', as if damaged, not one to upgrade for).
    if "version" in data.files:
        version = _format_version(data["version"])
        if version is None:
            raise _Refused(f"{path!r} has an unreadable format version")
        if version > VERSION:
            raise _Refused(f"{path!r} was written by a newer fastdnn (format {version})")
    missing = [k for k in ("version", *keys) if k not in data.files]
    if missing:
        raise _Refused(f"{path!r} is missing {', '.join(missing)}")
    # Each member is opened once where it can be (its header is parsed once); one that
    # ``checks`` names is read after its header passed them.
    # (``None`` for a header NumPy's own reader is left to, as ``(None, None, None)``)
    read = {k: declared_member(data, k, read=k not in checks) or (None, None, None)
            for k in (*wanted, *meta)}
    arrays = {k: data[k] if read[k][2] is None else read[k][2]
              for k in wanted if k not in checks}
    for k in wanted:
        if k in checks and read[k][0] is not None:  # checked against the others first
            try:
                checks[k](arrays, read[k][0])
            except ValueError as exc:
                raise _Refused(f"{path!r} holds an invalid model: {exc}") from None
        if k not in arrays:
            arrays[k] = data[k]
    metadata = {k[len(META_PREFIX):]: data[k] if read[k][2] is None else read[k][2]
                for k in meta}
    return {k: arrays[k] for k in wanted}, metadata


def _format_version(value):
    """The format version that the array ``value`` states: a 0-d whole number >= 1 (an
    integer, or a float or text of one); ``None`` for anything else (infinity raised
    OverflowError, and 1.5, 0, -1 and True loaded as format 1)."""
    if value.shape != () or value.dtype.kind not in "iufU":
        return None
    if value.dtype.kind in "iu":
        version = int(value)
    else:
        try:
            number = float(str(value)) if value.dtype.kind == "U" else float(value)
        except ValueError:
            return None
        if not number.is_integer():  # also NaN and infinity
            return None
        version = int(number)
    return version if version >= 1 else None


def _listed_members(path):
    """The count of members that the end record of the zip archive at ``path`` states
    (exact below 65,535 members, zip64 or not), or ``None`` where none is found or it is
    65,535: a zip64 archive's record says 0xFFFF for any count above (a model saved
    with 70,000 metadata keys was refused as corrupt)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - _END_RECORD - 0xFFFF))  # the record, and a comment at most
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _END_RECORD > len(tail):
        return None
    count = int.from_bytes(tail[at + 10:at + 12], "little")
    return None if count == 0xFFFF else count
