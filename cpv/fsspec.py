"""``cpv://`` for fsspec: pandas, datasets, torch and friends read a version without pulling it.

URL shape: ``cpv://<version>/<workspace path>``, e.g. ``cpv://v0.3/model/weights.safetensors``
or ``cpv://data-v0.2/data/train/part-0.csv``; ``cpv://`` alone lists the versions. Storage
options: ``workspace`` (default ``"."``), ``cache_dir`` (default the workspace's setting; the
store's endpoint, profile and region are the workspace's, ``CPV_*`` variables included), or
``resolver`` to read through another :data:`cpv.lazy.Resolver`::

    pd.read_csv("cpv://data-v0.2/data/train/part-0.csv", storage_options={"workspace": ws})

The filesystem is registered under the ``fsspec.specs`` entry point, so installing cpv is enough;
this module is imported only by fsspec (cpv itself never needs fsspec). It is read-only, and
every byte it returns has been checked against its chunk's blake3 id (see :mod:`cpv.lazy`).
Instances are not cached by fsspec (``cachable = False``): a cached instance would keep serving
a tag's old target after the tag was moved.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from fsspec.spec import AbstractFileSystem  # type: ignore[import-untyped, unused-ignore]

from cpv.engine.reader import PathInfo, SnapshotFile
from cpv.errors import PathNotFoundError
from cpv.lazy import Resolver, VersionView, WorkspaceResolver

__all__ = ["CPVFileSystem"]


class CPVFileSystem(AbstractFileSystem):  # type: ignore[misc, unused-ignore]
    """Read-only fsspec filesystem over the versions of one cpv workspace; see the module doc."""

    protocol = "cpv"
    root_marker = ""
    cachable = False

    def __init__(
        self,
        workspace: str | os.PathLike[str] = ".",
        *,
        resolver: Resolver | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        **storage_options: Any,
    ) -> None:
        super().__init__(**storage_options)
        self._owned: WorkspaceResolver | None = None
        if resolver is None:
            self._owned = WorkspaceResolver(workspace, cache_dir=cache_dir)
            resolver = self._owned
            weakref.finalize(self, self._owned.close)
        self._resolver: Resolver = resolver
        self._views: dict[str, VersionView] = {}

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        text = str(path[0] if isinstance(path, list) else path)
        if text.startswith("cpv://"):
            text = text[len("cpv://") :]
        elif text.startswith("cpv:"):
            text = text[len("cpv:") :]
        return text.strip("/")

    def _split(self, path: str) -> tuple[str, str]:
        clean = self._strip_protocol(path)
        version, _, inner = clean.partition("/")
        return version, inner

    def _view(self, version: str) -> VersionView:
        view = self._views.get(version)
        if view is None:
            view = self._views[version] = VersionView(version, self._resolver(version))
        return view

    @staticmethod
    def _entry(version: str, info: PathInfo) -> dict[str, Any]:
        name = f"{version}/{info.path}" if info.path else version
        entry: dict[str, Any] = {"name": name, "size": info.size, "type": info.type}
        if info.blake3 is not None:
            entry["blake3"] = info.blake3
        return entry

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        version, inner = self._split(path)
        if not version:
            versions = getattr(self._resolver, "versions", None)
            names = versions() if callable(versions) else []
            entries = [{"name": v, "size": 0, "type": "directory"} for v in names]
        else:
            entries = [self._entry(version, i) for i in self._view(version).listdir(inner)]
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        version, inner = self._split(path)
        if not version:
            return {"name": "", "size": 0, "type": "directory"}
        return self._entry(version, self._view(version).info(inner))

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SnapshotFile:
        if mode != "rb":
            raise NotImplementedError(f"cpv:// is read-only (mode {mode!r})")
        version, inner = self._split(path)
        if not version or not inner:
            raise PathNotFoundError(path, where="cpv://", hint="use cpv://<version>/<path>")
        return self._view(version).open(inner)

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        version, inner = self._split(path)
        view = self._view(version)
        size = view.info(inner).size
        lo = 0 if start is None else (start + size if start < 0 else start)
        hi = size if end is None else (end + size if end < 0 else end)
        lo, hi = max(0, min(lo, size)), max(0, min(hi, size))
        return view.read_range(inner, lo, max(0, hi - lo))

    def ukey(self, path: str) -> str:
        """The file's blake3: equal keys mean equal bytes, across versions."""
        return str(self.info(path).get("blake3") or self._strip_protocol(path))
