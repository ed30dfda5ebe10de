"""Read a version without pulling it: ``cpv.open``, file listings and safetensors tensors.

A version (``v0.3``, ``data-v0.2``) names, through the Git manifests at its tag, one snapshot
per tracked path (``model``, ``data``) in a store. Paths here are workspace paths, as after a
pull: ``open("v0.3", "model/weights.safetensors")`` reads the file ``weights.safetensors`` of the
snapshot that the ``model`` manifest at ``v0.3`` names. Bytes come from
:mod:`cpv.engine.reader`: only the chunks a read touches are fetched, each is verified, and
verified chunks are cached on disk and shared between versions.

Resolving a version to snapshots is the workspace service's business (which store, which
credentials, which cache); :class:`WorkspaceResolver` asks it. A caller may pass any other
:data:`Resolver` (a snapshot id in a bare store, say).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cpv.engine.reader import (
    DEFAULT_CACHE_BYTES,
    ChunkCache,
    PathInfo,
    SnapshotFile,
    SnapshotReader,
)
from cpv.engine.repository import Repository
from cpv.errors import ConfigError, FormatError, NotAFileError, PathNotFoundError, VersioningError

if TYPE_CHECKING:
    pass

__all__ = [
    "Mount",
    "PathInfo",
    "Resolver",
    "VersionView",
    "WorkspaceResolver",
    "list_files",
    "load_tensors",
    "open",
    "read_safetensors_header",
]


@dataclass(frozen=True, slots=True)
class Mount:
    """One snapshot of a version and the workspace path its files live under.

    ``root`` is ``"model"`` for a tracked folder ``model/``; for a tracked single file (pushed
    under its own name) it is the file's folder, ``""`` at the workspace root.
    """

    root: str
    repo: Repository
    snapshot_id: str


Resolver = Callable[[str], Sequence[Mount]]
"""``version -> mounts``: what the service layer provides to read a version lazily.

Must raise a :class:`~cpv.errors.CPVError` (``TagNotFoundError``, ``InvalidTagError``...) for a
version it cannot resolve. The repositories it returns stay open as long as the resolver does.
"""


class WorkspaceResolver:
    """The default :data:`Resolver`: a version name of a workspace -> its manifests' snapshots.

    Names mean what they mean on the command line (the workspace service resolves them): an
    alias (``production``) the version it points to; ``v0.3`` mounts the model and, when
    ``data-v0.3`` exists, the data; ``data-v0.3`` the data only; tags another machine pushed
    are fetched first. Bytes come from the workspace's store, opened once by the service with
    the workspace's settings, and closed by :meth:`close`.

    Args:
        workspace: a cpv workspace or a folder inside one.
        cache_dir: the cache root (index copies, chunk cache); default the configured one.
    """

    def __init__(
        self, workspace: str | os.PathLike[str] = ".", *,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from cpv.config import CPVConfig
        from cpv.service import WorkspaceService, find_workspace

        root = find_workspace(workspace)
        config = CPVConfig.load(workspace=root)
        if cache_dir is not None:
            config = config.replace(cache={"dir": str(Path(cache_dir).absolute())})
        self._service = WorkspaceService.open(root, config=config, interface="python")
        self.workspace = self._service.root
        self.cache_dir = config.cache_dir

    def __call__(self, version: str) -> list[Mount]:
        """The snapshots of ``version``.

        Raises:
            InvalidTagError, TagNotFoundError, VersioningError (nothing of that version),
            NoStoreError / StoreError: the store cannot be opened.
        """
        from cpv.errors import InvalidTagError
        from cpv.versioning.tags import parse_line_tag

        version = self._service.dealias(version)  # cpv://production/... reads what it names
        if parse_line_tag(version) is None:
            raise InvalidTagError(version, hint="name a version: v0.3, data-v0.3, "
                                  "name@v0.3 (a tracked path's line) or an alias")
        mounts = []
        repo = self._service.ws.repository()
        for track, manifest in self._service.version_manifests(version):
            mounts.append(Mount(track.folder, repo, manifest.snapshot_id))
        if not mounts:
            raise VersioningError(f"{version} holds no manifest",
                                  hint="list versions with 'cpv versions'")
        return sorted(mounts, key=lambda m: m.root)

    def versions(self) -> list[str]:
        """Version tags of the workspace, for listing the filesystem's root."""
        from cpv.versioning.tags import parse_line_tag

        return sorted(t.name for t in self._service.ws.git.list_tags()
                      if parse_line_tag(t.name) is not None)

    def close(self) -> None:
        self._service.close()

    def __enter__(self) -> WorkspaceResolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VersionView:
    """The files of one version under workspace paths, read lazily.

    Args:
        version: shown in errors.
        mounts: what the resolver returned for it.
        cache_bytes: bound of the on-disk chunk cache of each store.
    """

    def __init__(
        self, version: str, mounts: Iterable[Mount], *, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        self.version = version
        self.mounts = sorted(mounts, key=lambda m: len(m.root), reverse=True)
        self._cache_bytes = cache_bytes
        self._readers: dict[int, SnapshotReader] = {}

    def _reader(self, mount: Mount) -> SnapshotReader:
        reader = self._readers.get(id(mount))
        if reader is None:
            cache = ChunkCache.for_repository(mount.repo, max_bytes=self._cache_bytes)
            reader = self._readers[id(mount)] = SnapshotReader(
                mount.repo, mount.snapshot_id, cache=cache
            )
        return reader

    def _locate(self, path: str) -> tuple[Mount, str] | None:
        clean = _clean(path)
        for mount in self.mounts:  # longest root first
            if not mount.root:
                return mount, clean
            if clean == mount.root:
                return mount, ""
            if clean.startswith(mount.root + "/"):
                return mount, clean[len(mount.root) + 1 :]
        return None

    def _above_mounts(self, path: str) -> list[str]:
        """Names directly under ``path`` that lead to a mount root (folders of the workspace)."""
        clean = _clean(path)
        prefix = clean + "/" if clean else ""
        return sorted(
            {m.root[len(prefix) :].split("/", 1)[0] for m in self.mounts
             if m.root.startswith(prefix) and m.root != clean}
        )

    def _missing(self, path: str) -> PathNotFoundError:
        roots = ", ".join(m.root or "." for m in self.mounts)
        return PathNotFoundError(
            path, where=self.version, hint=f"{self.version} holds files under: {roots}"
        )

    def info(self, path: str) -> PathInfo:
        located = self._locate(path)
        if located is None:
            if self._above_mounts(path):
                return PathInfo(_clean(path), "directory", 0)
            raise self._missing(path)
        mount, inner = located
        try:
            info = self._reader(mount).info(inner)
        except PathNotFoundError:
            raise self._missing(path) from None
        return PathInfo(_join(mount.root, info.path), info.type, info.size, info.blake3)

    def listdir(self, path: str = "") -> list[PathInfo]:
        located = self._locate(path)
        if located is None:
            names = self._above_mounts(path)
            if not names:
                raise self._missing(path)
            clean = _clean(path)
            return [PathInfo(_join(clean, n), "directory", 0) for n in names]
        mount, inner = located
        try:
            entries = self._reader(mount).listdir(inner)
        except PathNotFoundError:
            raise self._missing(path) from None
        return [PathInfo(_join(mount.root, e.path), e.type, e.size, e.blake3) for e in entries]

    def files(self, prefix: str = "") -> list[PathInfo]:
        """Every file at or under ``prefix`` with its size (the listing helper for ``ls -R``)."""
        clean = _clean(prefix)
        located = self._locate(clean)
        if located is not None:
            mount, inner = located
            try:
                found = self._reader(mount).files(inner)
            except PathNotFoundError:
                raise self._missing(prefix) from None
            return [PathInfo(_join(mount.root, f.path), f.type, f.size, f.blake3) for f in found]
        if not self._above_mounts(clean):
            raise self._missing(prefix)
        under = clean + "/" if clean else ""
        result: list[PathInfo] = []
        for mount in sorted(self.mounts, key=lambda m: m.root):
            if mount.root.startswith(under) or not clean:
                result.extend(
                    PathInfo(_join(mount.root, f.path), f.type, f.size, f.blake3)
                    for f in self._reader(mount).files()
                )
        return result

    def open(self, path: str) -> SnapshotFile:
        """A read-only, seekable binary file; bytes are fetched as they are read.

        Raises:
            PathNotFoundError: the version holds no such file (also a FileNotFoundError).
            NotAFileError: ``path`` is a folder (also an IsADirectoryError).
        """
        located = self._locate(path)
        if located is None:
            if self._above_mounts(path):
                raise NotAFileError(_clean(path))
            raise self._missing(path)
        mount, inner = located
        try:
            return self._reader(mount).open(inner)
        except PathNotFoundError:
            raise self._missing(path) from None

    def read_range(self, path: str, start: int, length: int) -> bytes:
        """``length`` bytes of file ``path`` from ``start`` (fewer at its end)."""
        located = self._locate(path)
        if located is None:
            raise self._missing(path)
        mount, inner = located
        try:
            return self._reader(mount).read_range(inner, start, length)
        except PathNotFoundError:
            raise self._missing(path) from None


def _view(version: str, workspace: str | os.PathLike[str], resolver: Resolver | None
          ) -> tuple[VersionView, Callable[[], None]]:
    """A view of ``version`` and what to call when done with it (closes a default resolver)."""
    if resolver is not None:
        return VersionView(version, resolver(version)), lambda: None
    owned = WorkspaceResolver(workspace)
    try:
        return VersionView(version, owned(version)), owned.close
    except BaseException:
        owned.close()
        raise


def open(
    version: str,
    path: str,
    *,
    workspace: str | os.PathLike[str] = ".",
    resolver: Resolver | None = None,
) -> SnapshotFile:
    """Open file ``path`` (a workspace path) of ``version`` for reading, without pulling it.

    The file is seekable and read-only; each read fetches only the chunks it touches, checks
    each against its blake3 id, and caches them on disk, so reading them again (in any version)
    costs nothing. Close it (or use ``with``) to close the store connection it holds.

    Raises:
        InvalidTagError / TagNotFoundError: ``version`` is no version of the workspace.
        PathNotFoundError: the version holds no such file (also a FileNotFoundError).
        NotAFileError: ``path`` is a folder.
        IntegrityError: the store returned bytes that do not match their id.
    """
    view, done = _view(version, workspace, resolver)
    try:
        fh = view.open(path)
    except BaseException:
        done()
        raise
    fh.set_on_close(done)
    return fh


def list_files(
    version: str,
    prefix: str = "",
    *,
    workspace: str | os.PathLike[str] = ".",
    resolver: Resolver | None = None,
) -> list[PathInfo]:
    """Every file of ``version`` at or under ``prefix``, with its size and blake3.

    Raises:
        PathNotFoundError: nothing at ``prefix``.
    """
    view, done = _view(version, workspace, resolver)
    try:
        return view.files(prefix)
    finally:
        done()


# -- safetensors ----------------------------------------------------------------------------

SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
"""The safetensors format caps its JSON header at 100 MB; a larger length means damage."""

_NUMPY_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor's entry in a safetensors header; offsets are absolute in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def read_safetensors_header(fh: SnapshotFile, *, where: str = "") -> dict[str, TensorInfo]:
    """Parse the 8-byte length and JSON header of a safetensors file (reading nothing else).

    Raises:
        FormatError: the file is not a well-formed safetensors file.
    """
    where = where or fh.name
    fh.seek(0)
    head = fh.read(8)
    if len(head) != 8:
        raise FormatError(f"{where} is not a safetensors file (shorter than 8 bytes)")
    (length,) = struct.unpack("<Q", head)
    if length > SAFETENSORS_MAX_HEADER or 8 + length > fh.size:
        raise FormatError(f"{where} is not a safetensors file (header length {length})")
    try:
        doc = json.loads(fh.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{where} has a malformed safetensors header: {exc}") from exc
    if not isinstance(doc, dict):
        raise FormatError(f"{where} has a malformed safetensors header: not an object")
    base = 8 + length
    tensors: dict[str, TensorInfo] = {}
    for name, meta in doc.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in meta["data_offsets"])
            info = TensorInfo(name, str(meta["dtype"]), tuple(int(d) for d in meta["shape"]),
                              base + begin, base + end)
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{where}: malformed header entry for tensor {name!r}") from exc
        if not base <= info.start <= info.end <= fh.size:
            raise FormatError(f"{where}: tensor {name!r} lies outside the file")
        tensors[name] = info
    return tensors


def load_tensors(
    version: str,
    path: str,
    names: Sequence[str],
    *,
    workspace: str | os.PathLike[str] = ".",
    framework: Literal["np", "pt"] = "np",
    resolver: Resolver | None = None,
) -> dict[str, Any]:
    """Load the tensors ``names`` of safetensors file ``path`` of ``version``.

    Reads the header and then only those tensors' byte ranges (and so only their chunks) from
    the store: one tensor of a multi-GB checkpoint costs about its own size in transfers.

    Returns:
        name -> ``numpy.ndarray`` (``framework="np"``) or ``torch.Tensor`` (``"pt"``; needs
        torch, which cpv does not require).

    Raises:
        PathNotFoundError: no such file, or no tensor of that name in it.
        FormatError: the file is not safetensors, or a dtype numpy cannot represent (BF16, F8).
        ConfigError: numpy (or torch for ``"pt"``) is not installed, or ``framework`` is unknown.
    """
    if framework not in ("np", "pt"):
        raise ConfigError(f"unknown framework {framework!r}", hint="use framework='np' or 'pt'")
    try:
        import numpy as np
    except ImportError as exc:  # pragma: no cover - numpy is in every ML environment
        raise ConfigError("load_tensors needs numpy", hint="pip install numpy") from exc
    torch: Any = None
    if framework == "pt":
        try:
            import torch  # type: ignore[import-not-found, no-redef, unused-ignore]
        except ImportError as exc:
            raise ConfigError("framework='pt' needs torch",
                              hint="pip install torch, or use framework='np'") from exc
    with open(version, path, workspace=workspace, resolver=resolver) as fh:
        header = read_safetensors_header(fh, where=f"{version}:{path}")
        wanted = []
        for name in names:
            info = header.get(name)
            if info is None:
                known = ", ".join(sorted(header)[:5]) + (", ..." if len(header) > 5 else "")
                raise PathNotFoundError(name, where=f"{version}:{path}",
                                        hint=f"its tensors include: {known}")
            wanted.append(info)
        out: dict[str, Any] = {}
        for info in sorted(wanted, key=lambda t: t.start):  # in file order: neighbours share chunks
            dtype = _NUMPY_DTYPES.get(info.dtype)
            if dtype is None:
                raise FormatError(f"{version}:{path}: tensor {info.name!r} has dtype {info.dtype}, "
                                  "which numpy cannot hold")
            count = math.prod(info.shape)
            if count * np.dtype(dtype).itemsize != info.end - info.start:
                raise FormatError(f"{version}:{path}: tensor {info.name!r} has "
                                  f"{info.end - info.start} bytes for shape {list(info.shape)}")
            fh.seek(info.start)
            buf = bytearray(info.end - info.start)
            fh.readinto(buf)
            array = np.frombuffer(buf, dtype=dtype).reshape(info.shape)
            out[info.name] = torch.from_numpy(array) if torch is not None else array
    return {name: out[name] for name in names}


def _clean(path: str) -> str:
    return "/".join(p for p in str(path).split("/") if p not in ("", "."))


def _join(root: str, path: str) -> str:
    return f"{root}/{path}" if root and path else root or path
