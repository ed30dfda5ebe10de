"""A folder as an :class:`~cpv.store.ObjectStore`: the embedded default store.

Layout under the root::

    <root>/
    ├── .cpv-local-store             marker: this folder is a cpv store (never listed)
    ├── config                       keys map to files: "packs/ab/abcd…" -> packs/ab/abcd…
    ├── packs/ab/abcd…
    ├── …/.cpv-tmp-<pid>-<uuid>      a write in progress (never listed; safe to delete when stale)
    └── .multipart/<upload id>/      one pending multipart upload (never listed as objects)
        ├── key                      the key it will become; its mtime is the upload's start time
        └── part-00001 …             one file per part

Why it is shaped like this:

- ``put`` writes a process-unique temp file in the target's own folder, fsyncs it, then renames
  it over the key (``os.replace``), so a reader sees the whole object or nothing and a crash
  leaves at most a temp file. The folder is fsynced too, so the rename itself survives a crash.
- ``put(if_absent=True)`` publishes with ``os.link`` instead: link(2) fails if the name exists,
  which makes create-if-absent atomic between processes (and on NFSv3+, unlike ``O_EXCL``).
- Multipart parts are separate files so threads never share a file offset; ``complete`` joins
  them in the kernel (``copy_file_range``, else ``sendfile``) into a temp file and renames it.
- A store is created only in a new or empty folder, or one that already is a store (the
  marker, or, for stores made before the marker, a ``config`` file and no other top-level
  file). ``--store file:///etc`` once wrote ``/etc/config``; now the first write refuses.
- ``OSError`` becomes a :mod:`cpv.errors` error here, once: a full disk is
  :class:`~cpv.errors.LocalIOError` ("free disk space"), permissions are
  :class:`~cpv.errors.StoreAccessError`, a missing file is
  :class:`~cpv.errors.ObjectNotFoundError`.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import shutil
import stat as stat_module
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from cpv import osio
from cpv.errors import (
    CPVError,
    LocalIOError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StoreAccessError,
    StoreError,
)
from cpv.store import Buffer, ObjectInfo, PendingUpload, StoreCaps, check_key
from cpv.store.memory import check_part_number, check_part_sequence, check_range

__all__ = ["LocalStore"]

logger = logging.getLogger(__name__)

TMP_PREFIX = ".cpv-tmp-"
MULTIPART_DIR = ".multipart"
STORE_MARKER = ".cpv-local-store"
"""Written when the store creates its folder; a folder holding it is a store."""
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_COPY_BLOCK = 8 * 1024 * 1024

_NOT_FOUND = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR})
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_NO_ACCESS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
# sendfile(2) to a regular file is Linux-only; elsewhere it fails with one of these.
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSOCK})


class LocalStore:
    """Objects as files under ``root``; see the module docstring for the layout and guarantees.

    The folder is created by the first write, so opening a store touches nothing.

    Args:
        root: the store's folder.
        max_connections: what ``caps.max_connections`` reports (parallel readers/writers).
    """

    def __init__(self, root: str | os.PathLike[str], *, max_connections: int = 8) -> None:
        self.root = Path(root).absolute()
        self.url = str(self.root)
        self.caps = StoreCaps(
            max_connections=max_connections, conditional_put=True, min_part_size=0
        )
        self._multipart_root = self.root / MULTIPART_DIR
        self._root_ok = False

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    # -- objects -----------------------------------------------------------------------------

    def put(self, key: str, data: Buffer, *, if_absent: bool = False) -> None:
        path = self._path(key)
        self._claim_root()
        parent = os.path.dirname(path)
        try:
            tmp = _write_temp(parent, data, make_parent=True, fsync=True)
            try:
                if if_absent:
                    try:
                        os.link(tmp, path)
                    except FileExistsError:
                        raise PreconditionFailedError(key) from None
                else:
                    os.replace(tmp, path)
                    tmp = ""
            finally:
                if tmp:
                    _remove_quietly(tmp)
            _fsync_dir(parent)
        except OSError as exc:
            raise _translate(exc, path=path, action="write") from exc

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise _translate(exc, path=path, action="read", key=key) from exc

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(key, start, length, size=None)
        buf = bytearray(length)
        self.get_range_into(key, start, memoryview(buf))
        return bytes(buf)

    def get_range_into(self, key: str, start: int, buf: memoryview) -> None:
        path = self._path(key)
        view = buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf
        try:
            with open(path, "rb", buffering=0) as f:
                fd = f.fileno()
                check_range(key, start, len(view), size=os.fstat(fd).st_size)
                done = 0
                while done < len(view):
                    n = _pread_into(f, view[done:], start + done)
                    if n == 0:
                        raise StoreError(f"short read of {key}: the file shrank while being read")
                    done += n
        except OSError as exc:
            raise _translate(exc, path=path, action="read", key=key) from exc

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise _translate(exc, path=path, action="stat", key=key) from exc
        if not stat_module.S_ISREG(st.st_mode):
            raise ObjectNotFoundError(key)
        return ObjectInfo(key=key, size=st.st_size, mtime=st.st_mtime)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        head, _, name_prefix = prefix.rpartition("/")
        if head:
            check_key(head)
            if _is_reserved(head):
                return
            folder = os.path.join(self.root, *head.split("/"))
            yield from self._walk(folder, head + "/", name_prefix)
        else:
            yield from self._walk(str(self.root), "", name_prefix)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except OSError as exc:
            if exc.errno in _NOT_FOUND:
                return  # idempotent: already gone (or never an object)
            raise _translate(exc, path=path, action="delete") from exc

    def delete_many(self, keys: Iterable[str]) -> None:
        """Delete every key (missing ones are fine); the same as ``delete`` in a loop here."""
        for key in keys:
            self.delete(key)

    # -- multipart ---------------------------------------------------------------------------

    def start_multipart(self, key: str) -> _LocalUpload:
        self._path(key)
        self._claim_root()
        upload_id = uuid.uuid4().hex
        final = self._multipart_root / upload_id
        # Build the folder under a temp name and rename it, so list_multipart never sees an
        # upload without its key file.
        staging = self._multipart_root / f"{TMP_PREFIX}{upload_id}"
        try:
            os.makedirs(staging)
            (staging / "key").write_text(key, encoding="utf-8")
            os.rename(staging, final)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise _translate(exc, path=str(final), action="start a multipart upload in") from exc
        return _LocalUpload(self, key, upload_id)

    def list_multipart(self, prefix: str = "") -> Iterator[PendingUpload]:
        pending: list[PendingUpload] = []
        try:
            with os.scandir(self._multipart_root) as it:
                entries = list(it)
        except OSError as exc:
            if exc.errno in _NOT_FOUND:
                return
            raise _translate(exc, path=str(self._multipart_root), action="list") from exc
        for entry in entries:
            if not _UPLOAD_ID.fullmatch(entry.name):
                continue
            key_file = os.path.join(entry.path, "key")
            try:
                with open(key_file, encoding="utf-8") as f:
                    key = f.read()
                initiated = os.stat(key_file).st_mtime
            except OSError as exc:
                if exc.errno in _NOT_FOUND:
                    continue  # completed or aborted meanwhile
                raise _translate(exc, path=key_file, action="read") from exc
            if key.startswith(prefix):
                pending.append(PendingUpload(key=key, upload_id=entry.name, initiated=initiated))
        pending.sort(key=lambda p: (p.key, p.initiated, p.upload_id))
        yield from pending

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._path(key)
        folder = self._upload_dir(upload_id)
        try:
            with open(folder / "key", encoding="utf-8") as f:
                recorded = f.read()
        except OSError as exc:
            if exc.errno in _NOT_FOUND:
                return  # idempotent: nothing left to abort
            raise _translate(exc, path=str(folder), action="read") from exc
        if recorded == key:
            self._discard_upload(upload_id)

    def close(self) -> None:
        pass

    # -- internals ---------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        check_key(key)
        if _is_reserved(key):
            raise StoreError(
                f"invalid object key {key!r}: {MULTIPART_DIR}, {STORE_MARKER} and {TMP_PREFIX}* "
                "are reserved by the local store"
            )
        return os.path.join(self.root, *key.split("/"))

    def _claim_root(self) -> None:
        """Before the first write: the folder must be new, empty, or already a store.

        Raises:
            StoreAccessError: the folder holds something else; nothing was written.
        """
        if self._root_ok:
            return
        root = str(self.root)
        marker = os.path.join(root, STORE_MARKER)
        try:
            try:
                names = os.listdir(root)
            except FileNotFoundError:
                names = None
            if names and STORE_MARKER not in names and not _is_legacy_store(root, names):
                raise StoreAccessError(
                    f"{root} is not empty and is not a cpv store; a local store is created "
                    "only in a new or empty folder",
                    hint="choose a new or empty folder for the store (cpv init --store ...)",
                )
            if names is None or STORE_MARKER not in names:
                os.makedirs(root, exist_ok=True)
                with open(marker, "a", encoding="utf-8"):
                    pass
        except NotADirectoryError as exc:
            raise StoreAccessError(
                f"{root} is a file, not a folder; a local store needs a folder",
                hint="choose a new or empty folder for the store (cpv init --store ...)",
            ) from exc
        except OSError as exc:
            raise _translate(exc, path=root, action="create the store in") from exc
        self._root_ok = True

    def _upload_dir(self, upload_id: str) -> Path:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise StoreError(f"invalid multipart upload id {upload_id!r} for {self.url}")
        return self._multipart_root / upload_id

    def _discard_upload(self, upload_id: str) -> None:
        """Remove an upload's folder; renamed first so that concurrent part writes fail fast."""
        folder = self._multipart_root / upload_id
        trash = self._multipart_root / f"{TMP_PREFIX}{upload_id}-{uuid.uuid4().hex}"
        try:
            os.rename(folder, trash)
        except OSError as exc:
            if exc.errno in _NOT_FOUND:
                return
            raise _translate(exc, path=str(folder), action="remove") from exc
        shutil.rmtree(trash, ignore_errors=True)

    def _walk(self, folder: str, base: str, name_prefix: str) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(folder) as it:
                entries = [
                    (entry.name + "/" if entry.is_dir() else entry.name, entry)
                    for entry in it
                    if entry.name.startswith(name_prefix)
                    and not entry.name.startswith(TMP_PREFIX)
                    and not (base == "" and entry.name in (MULTIPART_DIR, STORE_MARKER))
                ]
        except OSError as exc:
            if exc.errno in _NOT_FOUND:
                return
            raise _translate(exc, path=folder, action="list") from exc
        # Sorting a folder by "name/" yields keys in plain string order across levels:
        # "a-c" < "a/b" because "-" < "/", even though the folder "a" sorts before "a-c".
        entries.sort(key=lambda pair: pair[0])
        for sort_name, entry in entries:
            if sort_name.endswith("/"):
                yield from self._walk(entry.path, base + sort_name, "")
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # deleted while we listed
            if stat_module.S_ISREG(st.st_mode):
                yield ObjectInfo(key=base + entry.name, size=st.st_size, mtime=st.st_mtime)


class _LocalUpload:
    """Parts as files in ``.multipart/<id>/``; ``complete`` concatenates and renames them."""

    def __init__(self, store: LocalStore, key: str, upload_id: str) -> None:
        self.key = key
        self.upload_id = upload_id
        self._store = store
        self._folder = store._multipart_root / upload_id

    def upload_part(self, part_number: int, data: Buffer) -> None:
        check_part_number(self.key, part_number, self._store.caps.max_parts)
        target = self._folder / f"part-{part_number:05d}"
        try:
            # No fsync per part: complete() fsyncs the joined object, which is what must last.
            tmp = _write_temp(str(self._folder), data, make_parent=False, fsync=False)
            try:
                os.replace(tmp, target)
            except BaseException:
                _remove_quietly(tmp)
                raise
        except OSError as exc:
            if exc.errno in _NOT_FOUND:
                raise self._gone() from exc
            raise _translate(exc, path=str(target), action="write") from exc

    def complete(self) -> None:
        path = self._store._path(self.key)
        parent = os.path.dirname(path)
        try:
            parts = sorted(
                (int(name[len("part-") :]), name)
                for name in os.listdir(self._folder)
                if name.startswith("part-")
            )
        except OSError as exc:
            if exc.errno in _NOT_FOUND:
                raise self._gone() from exc
            raise _translate(exc, path=str(self._folder), action="read") from exc
        check_part_sequence(self.key, [number for number, _ in parts])
        tmp = ""
        try:
            os.makedirs(parent, exist_ok=True)
            tmp = os.path.join(parent, _temp_name())
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | osio.O_CLOEXEC, 0o666)
            try:
                for _, name in parts:
                    with open(self._folder / name, "rb", buffering=0) as src:
                        _copy_all(src.fileno(), fd, os.fstat(src.fileno()).st_size)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            tmp = ""
            _fsync_dir(parent)
        except OSError as exc:
            if exc.errno in _NOT_FOUND and not os.path.isdir(self._folder):
                raise self._gone() from exc
            raise _translate(exc, path=path, action="write") from exc
        finally:
            if tmp:
                _remove_quietly(tmp)
        # The object is durable; leaving the folder behind would only show up as a stale upload.
        self._store._discard_upload(self.upload_id)

    def abort(self) -> None:
        self._store.abort_multipart(self.key, self.upload_id)

    def _gone(self) -> StoreError:
        return StoreError(
            f"multipart upload {self.upload_id} of {self.key} does not exist "
            f"(completed or aborted) in {self._store.url}",
            hint="start a new multipart upload",
        )


def _is_reserved(key: str) -> bool:
    parts = key.split("/")
    return parts[0] in (MULTIPART_DIR, STORE_MARKER) or any(
        part.startswith(TMP_PREFIX) for part in parts
    )


def _is_legacy_store(root: str, names: list[str]) -> bool:
    """A store made before the marker: ``config`` and, beside it, only folders and temp files.

    Judged by the layout alone (the store knows nothing of what ``config`` says): ``/etc`` or
    a ``.git`` folder hold other top-level files and are refused.
    """
    if "config" not in names:
        return False
    for name in names:
        if name == "config" or name.startswith(TMP_PREFIX):
            continue
        if not os.path.isdir(os.path.join(root, name)) or os.path.islink(os.path.join(root, name)):
            return False
    return True


def _temp_name() -> str:
    # pid + random: unique across processes and threads, recognisable by list() and cleanup.
    return f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"


def _write_temp(folder: str, data: Buffer, *, make_parent: bool, fsync: bool) -> str:
    """Write ``data`` to a new temp file in ``folder``; returns its path. Removes it on failure."""
    if make_parent:
        os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, _temp_name())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | osio.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _remove_quietly(tmp)
        raise
    os.close(fd)
    return tmp


def _pread_into(f: io.FileIO, view: memoryview, offset: int) -> int:
    """Read at ``offset`` straight into ``view``: no intermediate bytes object."""
    return osio.pread_into(f.fileno(), view, offset)


def _copy_all(src: int, dst: int, size: int) -> None:
    """Append ``size`` bytes of ``src`` to ``dst`` in the kernel where it can, else by blocks."""
    remaining = size
    if hasattr(os, "copy_file_range"):
        try:
            while remaining:
                n = os.copy_file_range(src, dst, min(remaining, 1 << 30))
                if n == 0:
                    break
                remaining -= n
        except OSError as exc:
            # Not supported here (old kernel, cross-device, some FUSE/NFS): fall through.
            if remaining != size or exc.errno not in (
                errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF
            ):
                raise
    if remaining and hasattr(os, "sendfile") and remaining == size:
        try:
            while remaining:
                n = os.sendfile(dst, src, None, min(remaining, 1 << 30))
                if n == 0:
                    break
                remaining -= n
        except OSError as exc:
            if remaining != size or exc.errno not in _NO_SENDFILE:
                raise
    buf = bytearray(min(remaining, _COPY_BLOCK))
    view = memoryview(buf)
    while remaining:
        n = os.readv(src, [view[: min(remaining, len(view))]])
        if n == 0:
            break
        done = 0
        while done < n:
            done += os.write(dst, view[done:n])
        remaining -= n
    if remaining:
        raise LocalIOError(f"a multipart part shrank while it was joined ({remaining} bytes short)")


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (POSIX needs the directory itself fsynced)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):  # not supported for folders here
            raise
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:
        logger.debug("could not remove temp file %s: %s", path, exc)


def _translate(exc: OSError, *, path: str, action: str, key: str | None = None) -> CPVError:
    """The one place an ``OSError`` of this adapter becomes a cpv error."""
    code = exc.errno
    if key is not None and code in _NOT_FOUND:
        return ObjectNotFoundError(key)
    if code in _NO_SPACE:
        return LocalIOError(
            f"no space left on device: cannot {action} {path}", path=path, hint="free disk space"
        )
    if code in _NO_ACCESS:
        return StoreAccessError(
            f"permission denied: cannot {action} {path} ({exc.strerror})",
            hint="check the permissions of the store folder, or use another folder",
        )
    return LocalIOError(f"cannot {action} {path}: {exc.strerror or exc}", path=path)
