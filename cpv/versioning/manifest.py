"""The Git-side manifest of one tracked path: what Git commits instead of the bytes.

A workspace tracks paths (a model folder or file, data split folders). Their bytes live in the
store; Git holds, per tracked path, one small JSON manifest at
``.cpv/manifests/<kind>/<name>.json`` naming the store snapshot that holds the bytes, a summary
of it (file count, total size, files added/changed/removed since the previous version), the
version's metrics and message. The format is specified in ``docs/manifest-format.md``.

Schema 2 (written now) is a *pointer*: the file list lives in the store snapshot only, whose id
is the hash of its content, so the manifest pins the exact files without repeating them and its
size does not depend on the file count (Git grew by ~142 bytes per file per version with
schema 1). Schema 1 manifests, which also list every file, are still read (old tags); their
``files`` is a tuple, a schema-2 manifest's is ``None``. Who needs the files of a version asks
:mod:`cpv.service.filelist`, never ``Manifest.files``.

The encoding is canonical (sorted keys, one top-level key per line, trailing newline; schema 1
also one file per line) so the same manifest always has the same bytes.

Manifests may come from someone else's repository, so :meth:`Manifest.from_json` trusts nothing:
malformed JSON, an unknown ``schema_version``, a missing or extra field, a wrong type or an
inconsistent total is a :class:`~cpv.errors.FormatError`; a path that breaks the path rule
shared with the engine (:mod:`cpv.pathrules`: absolute, ``..``, ``.``, a backslash, a NUL, an
empty segment, a ``.git`` segment, not UTF-8), a duplicate or a file/folder clash is an
:class:`~cpv.errors.UnsafePathError` (invariant 7). Any
:class:`Manifest` object that exists has passed those checks, because they run in
``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Final

from cpv.errors import CPVError, FormatError, UnsafePathError
from cpv.pathrules import check_relpath
from cpv.versioning.metrics import normalize_metrics
from cpv.versioning.tags import KINDS, LINE_NAME, Kind, line_name_problem

SCHEMA_VERSION: Final = 2
"""The manifest schema this code writes (a pointer manifest, no file list)."""

READ_SCHEMAS: Final = (1, 2)
"""The schemas this code reads: 1 lists every file, 2 points at the store snapshot."""

MANIFEST_DIR: Final = ".cpv/manifests"
"""Folder (relative to the workspace root, posix) that holds ``<kind>/<name>.json``."""

ExtraValue = str | int | float | bool | None
"""What ``extra`` may hold: JSON scalars only (e.g. ``sample_count`` for data)."""

_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_NAME_RE: Final = re.compile(LINE_NAME)
_TAG_LIKE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._-]{0,127}")
_RESERVED_TOP: Final = frozenset({".git", ".cpv"})
_REQUIRED_KEYS: Final = frozenset({
    "schema_version", "kind", "path", "is_dir", "snapshot_id", "store_url", "files",
    "total_size", "file_count", "metrics", "message", "created_at", "author",
})
_REQUIRED_KEYS_V2: Final = frozenset({
    "schema_version", "kind", "path", "is_dir", "snapshot_id", "store_url", "summary",
    "metrics", "message", "created_at", "author",
})
_OPTIONAL_KEYS: Final = frozenset({"extra", "lineage", "params", "line"})
_LINEAGE_KEYS: Final = frozenset({"data_path", "data_snapshot_id", "data_tag"})
_SUMMARY_KEYS: Final = frozenset({"file_count", "total_size", "added", "changed", "removed"})
_FILE_KEYS: Final = frozenset({"path", "size", "blake3"})
_MAX_NAME_LEN: Final = 100


_HINT_FIELDS: Final = ("the manifest was damaged or written by hand: restore it from Git history "
                       "(git log -- .cpv/manifests), or push the version again")
_HINT_DAMAGED: Final = (
    "the manifest is damaged or was not written by cpv; restore it from Git history"
)


def _invalid(message: str) -> FormatError:
    return FormatError(message, hint=_HINT_FIELDS)


def check_tracked_path(path: str) -> None:
    """The shared path rule (:mod:`cpv.pathrules`), and nothing inside ``.git`` or ``.cpv``."""
    if not isinstance(path, str):
        raise _invalid(f"tracked path must be a string, got {type(path).__name__}")
    check_relpath(path, what="tracked path")
    if path.split("/", 1)[0].lower() in _RESERVED_TOP:
        raise UnsafePathError(path, "tracked path is inside .git or .cpv, which cpv owns")


def manifest_name(tracked_path: str) -> str:
    """The file name slug (without ``.json``) of a tracked path's manifest.

    Lower-case (so two names never differ only by case, which clash on macOS/Windows),
    ``/`` becomes ``-``, anything outside ``[a-z0-9._-]`` becomes ``_``, a leading ``.`` becomes
    ``_``; long names are cut and suffixed with a short hash. ``"model"`` -> ``"model"``,
    ``"data/train"`` -> ``"data-train"``. Two tracked paths can map to the same name
    (``data/train`` and ``data-train``); the history layer refuses the second one.
    """
    check_tracked_path(tracked_path)
    slug = re.sub(r"[^a-z0-9._-]", "_", tracked_path.lower().replace("/", "-"))
    if slug.startswith("."):
        slug = "_" + slug[1:]
    if len(slug) > _MAX_NAME_LEN:
        digest = hashlib.sha256(tracked_path.encode("utf-8")).hexdigest()[:12]
        slug = f"{slug[: _MAX_NAME_LEN - 13]}-{digest}"
    return slug


def check_manifest_name(name: str) -> None:
    """Refuse a manifest name that is not a slug :func:`manifest_name` could produce."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise UnsafePathError(str(name), "not a valid manifest name ([a-z0-9._-], max 128)")


def manifest_relpath(kind: Kind, name: str) -> str:
    """``.cpv/manifests/<kind>/<name>.json``: where the manifest lives in the workspace."""
    if kind not in KINDS:
        raise ValueError(f"kind must be 'model' or 'data', not {kind!r}")
    check_manifest_name(name)
    return f"{MANIFEST_DIR}/{kind}/{name}.json"


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with second precision: ``2026-01-10T15:30:00Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """Parse what :func:`format_timestamp` writes (and any offset-aware ISO 8601 form)."""
    if not isinstance(text, str):
        raise _invalid(f"created_at must be a string, got {type(text).__name__}")
    candidate = text[:-1] + "+00:00" if text.endswith("Z") else text
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError as exc:
        raise _invalid(f"created_at {text!r} is not an ISO 8601 timestamp") from exc
    if moment.tzinfo is None:
        raise _invalid(f"created_at {text!r} has no time zone; write UTC with a 'Z'")
    return moment.astimezone(timezone.utc)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a tracked path: its path relative to the tracked path, size, blake3."""

    path: str
    size: int
    blake3: str

    def __post_init__(self) -> None:
        if not isinstance(self.path, str):
            raise _invalid(f"file path must be a string, got {type(self.path).__name__}")
        check_relpath(self.path, what="file path")
        if not _is_int(self.size) or self.size < 0:
            raise _invalid(f"file {self.path!r}: size must be a non-negative integer, "
                              f"got {self.size!r}")
        if not isinstance(self.blake3, str) or not _HEX64.fullmatch(self.blake3):
            raise _invalid(f"file {self.path!r}: blake3 must be 64 lowercase hex digits")

    def to_dict(self) -> dict[str, object]:
        """The JSON object of this entry."""
        return {"blake3": self.blake3, "path": self.path, "size": self.size}


def _check_tree(files: tuple[FileEntry, ...]) -> None:
    """No duplicates, and no path that is both a file and a folder (``a`` and ``a/b``)."""
    seen: set[str] = set()
    for entry in files:
        if entry.path in seen:
            raise UnsafePathError(entry.path, "listed twice")
        seen.add(entry.path)
    for entry in files:
        parent = entry.path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in seen:
                raise UnsafePathError(parent, f"is a file and also the folder of {entry.path!r}")


def _freeze_extra(extra: Mapping[str, object]) -> MappingProxyType[str, ExtraValue]:
    if not isinstance(extra, Mapping):
        raise _invalid(f"extra must be a mapping, got {type(extra).__name__}")
    result: dict[str, ExtraValue] = {}
    for key, value in sorted(extra.items()):
        if not isinstance(key, str) or not key:
            raise _invalid(f"extra key {key!r} must be a non-empty string")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise _invalid(f"extra[{key!r}] must be a JSON scalar, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _invalid(f"extra[{key!r}] must be finite")
        result[key] = value
    return MappingProxyType(result)


def _freeze_params(params: Mapping[str, object]) -> MappingProxyType[str, str]:
    """Hyper-parameters stay the strings the user typed (``3e-4`` is not ``0.0003``)."""
    if not isinstance(params, Mapping):
        raise _invalid(f"params must be a mapping, got {type(params).__name__}")
    result: dict[str, str] = {}
    for key, value in sorted(params.items()):
        if not isinstance(key, str) or not key.strip() or "=" in key or any(
                ord(ch) < 0x20 for ch in key):
            raise _invalid(f"param name {key!r} must be a non-empty single-line string "
                           "without '='")
        if not isinstance(value, str) or any(ord(ch) < 0x20 for ch in value):
            raise _invalid(f"params[{key!r}] must be a single-line string")
        result[key] = value
    return MappingProxyType(result)


@dataclass(frozen=True, slots=True)
class Lineage:
    """The data that was in the workspace when a model version was pushed: the data
    manifest's tracked path and snapshot, and its tag if it had one then (a tag made later,
    such as the ``data-v0.3`` of a combined ``push --tag``, is found by its snapshot)."""

    data_path: str
    data_snapshot_id: str
    data_tag: str | None = None

    def __post_init__(self) -> None:
        check_tracked_path(self.data_path)
        if not isinstance(self.data_snapshot_id, str) or not _HEX64.fullmatch(
                self.data_snapshot_id):
            raise _invalid("lineage data_snapshot_id must be 64 lowercase hex digits")
        if self.data_tag is not None and (not isinstance(self.data_tag, str)
                                          or not _TAG_LIKE.fullmatch(self.data_tag)):
            raise _invalid(f"lineage data_tag {self.data_tag!r} is not a version tag")

    def to_dict(self) -> dict[str, object]:
        return {"data_path": self.data_path, "data_snapshot_id": self.data_snapshot_id,
                "data_tag": self.data_tag}

    @classmethod
    def from_dict(cls, raw: object) -> Lineage:
        if not isinstance(raw, dict) or raw.keys() != _LINEAGE_KEYS:
            raise FormatError('lineage must be an object with exactly "data_path", '
                              '"data_snapshot_id", "data_tag"', hint=_HINT_DAMAGED)
        return cls(data_path=raw["data_path"], data_snapshot_id=raw["data_snapshot_id"],
                   data_tag=raw["data_tag"])


@dataclass(frozen=True, slots=True)
class ChangeCounts:
    """Files added, changed and removed against the previous version of the same path.

    Kept in the pointer manifest so ``cpv versions`` and a reviewer reading ``git log -p`` see
    the size of a change without fetching two file lists from the store.
    """

    added: int
    changed: int
    removed: int

    def __post_init__(self) -> None:
        for name in ("added", "changed", "removed"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise _invalid(f"summary {name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class Manifest:
    """What Git records about one tracked path at one version.

    ``files`` is ``None`` for a schema-2 (pointer) manifest, which gives ``file_count`` and
    ``total_size`` itself (and ``changes`` when known). A schema-1 manifest's ``files`` is
    sorted by path on construction and its totals are derived from it (given ones are
    ignored). ``metrics`` and ``extra`` are read-only mappings. ``created_at`` is normalised to
    UTC, whole seconds. Construction validates everything (see the module docstring).

    ``is_dir`` tells whether the tracked path is a folder (files relative to it) or a single
    file (then the version holds exactly one file, named after the path's last segment).
    """

    kind: Kind
    path: str
    snapshot_id: str
    store_url: str
    files: tuple[FileEntry, ...] | None
    message: str = ""
    author: str = ""
    created_at: datetime = field(default_factory=_utc_now)
    metrics: Mapping[str, float] = field(default_factory=dict)
    is_dir: bool = True
    extra: Mapping[str, ExtraValue] = field(default_factory=dict)
    lineage: Lineage | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    total_size: int = -1
    file_count: int = -1
    changes: ChangeCounts | None = None
    line: str | None = None
    """The version line's name when a push chose it (``--name``); None: the path's slug."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise _invalid(f"manifest kind must be 'model' or 'data', not {self.kind!r}")
        check_tracked_path(self.path)
        if self.line is not None:
            if self.line == manifest_name(self.path):
                object.__setattr__(self, "line", None)  # one spelling: the slug is implied
            elif (problem := line_name_problem(self.line)) is not None:
                raise _invalid(f"manifest line {self.line!r}: {problem}")
        if not isinstance(self.snapshot_id, str) or not _HEX64.fullmatch(self.snapshot_id):
            raise _invalid("manifest snapshot_id must be 64 lowercase hex digits")
        if not isinstance(self.store_url, str) or not self.store_url.strip() or any(
            ord(ch) < 0x20 for ch in self.store_url
        ):
            raise _invalid("manifest store_url must be a non-empty single-line string")
        for name in ("message", "author"):
            if not isinstance(getattr(self, name), str):
                raise _invalid(f"manifest {name} must be a string")
        if not isinstance(self.is_dir, bool):
            raise _invalid("manifest is_dir must be true or false")
        if not isinstance(self.created_at, datetime) or self.created_at.tzinfo is None:
            raise _invalid("manifest created_at must be a time-zone-aware datetime")
        if self.changes is not None and not isinstance(self.changes, ChangeCounts):
            raise _invalid("manifest changes must be ChangeCounts")
        set_ = object.__setattr__
        if self.files is None:
            self._check_summary()
        else:
            if not all(isinstance(entry, FileEntry) for entry in self.files):
                raise _invalid("manifest files must be FileEntry values")
            files = tuple(sorted(self.files, key=lambda entry: entry.path))
            _check_tree(files)
            if not self.is_dir:
                basename = self.path.rsplit("/", 1)[-1]
                if len(files) != 1 or files[0].path != basename:
                    raise _invalid(
                        f"manifest of the single file {self.path!r} must list exactly one "
                        f"entry named {basename!r}"
                    )
            set_(self, "files", files)
            set_(self, "total_size", sum(entry.size for entry in files))
            set_(self, "file_count", len(files))
        set_(self, "created_at", self.created_at.astimezone(timezone.utc).replace(microsecond=0))
        set_(self, "metrics", MappingProxyType(normalize_metrics(self.metrics,
                                                                 source="manifest metrics")))
        set_(self, "extra", _freeze_extra(self.extra))
        if self.lineage is not None and not isinstance(self.lineage, Lineage):
            raise _invalid("manifest lineage must be a Lineage value")
        set_(self, "params", _freeze_params(self.params))

    def _check_summary(self) -> None:
        for name in ("file_count", "total_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise _invalid(f"summary {name} must be a non-negative integer, got {value!r}")
        if not self.is_dir and self.file_count != 1:
            raise _invalid(f"manifest of the single file {self.path!r} must count exactly one "
                           f"file, not {self.file_count}")

    @property
    def schema_version(self) -> int:
        """1 when the manifest lists its files (an old version), 2 for a pointer manifest."""
        return 1 if self.files is not None else 2

    def as_pointer(self, changes: ChangeCounts | None = None) -> Manifest:
        """The same version as a schema-2 manifest (what ``cpv migrate`` commits)."""
        return dataclasses.replace(self, files=None, changes=changes or self.changes)

    def __hash__(self) -> int:
        # metrics/extra are read-only mappings (not hashable); the rest identifies a manifest.
        return hash((self.kind, self.path, self.snapshot_id, self.files, self.created_at,
                     self.message))

    @property
    def name(self) -> str:
        """The version line's name, which is the manifest's file name: the ``line`` a push
        chose, else the path's slug (see :func:`manifest_name`)."""
        return self.line if self.line is not None else manifest_name(self.path)

    @property
    def relpath(self) -> str:
        """Where this manifest lives in the workspace: ``.cpv/manifests/<kind>/<name>.json``."""
        return manifest_relpath(self.kind, self.name)

    def replace(self, **changes: Any) -> Manifest:
        """A copy with some fields changed (validated again; schema-1 totals recomputed)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        """The manifest as plain JSON-ready data (keys as written to disk), in its schema.

        ``lineage``, ``params`` and ``line`` are written only when set, so a version without
        them has the same bytes as before they existed (older cpv reads it; no churn in Git).
        """
        optional: dict[str, object] = {}
        if self.lineage is not None:
            optional["lineage"] = self.lineage.to_dict()
        if self.params:
            optional["params"] = dict(self.params)
        if self.line is not None:
            optional["line"] = self.line
        if self.files is None:
            counts = self.changes
            return {
                **optional,
                "author": self.author,
                "created_at": format_timestamp(self.created_at),
                "extra": dict(self.extra),
                "is_dir": self.is_dir,
                "kind": self.kind,
                "message": self.message,
                "metrics": dict(self.metrics),
                "path": self.path,
                "schema_version": 2,
                "snapshot_id": self.snapshot_id,
                "store_url": self.store_url,
                "summary": {
                    "added": counts.added if counts else None,
                    "changed": counts.changed if counts else None,
                    "file_count": self.file_count,
                    "removed": counts.removed if counts else None,
                    "total_size": self.total_size,
                },
            }
        return {
            **optional,
            "author": self.author,
            "created_at": format_timestamp(self.created_at),
            "extra": dict(self.extra),
            "file_count": self.file_count,
            "files": [entry.to_dict() for entry in self.files],
            "is_dir": self.is_dir,
            "kind": self.kind,
            "message": self.message,
            "metrics": dict(self.metrics),
            "path": self.path,
            "schema_version": 1,
            "snapshot_id": self.snapshot_id,
            "store_url": self.store_url,
            "total_size": self.total_size,
        }

    def to_json(self) -> str:
        """The canonical text: sorted keys, one key per line (schema 1: one file per line),
        final newline."""

        def dump(value: object) -> str:
            return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))

        lines = ["{"]
        items = sorted(self.to_dict().items())
        for index, (key, value) in enumerate(items):
            comma = "," if index < len(items) - 1 else ""
            if key == "files" and self.files is not None and self.files:
                lines.append(' "files": [')
                rows = [f"  {dump(entry.to_dict())}" for entry in self.files]
                lines.append(",\n".join(rows))
                lines.append(f" ]{comma}")
            else:
                lines.append(f" {dump(key)}: {dump(value)}{comma}")
        lines.append("}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "manifest") -> Manifest:
        """Parse and validate a manifest; ``source`` names it in error messages.

        Raises:
            FormatError: malformed JSON, unknown schema_version, missing/unknown fields, wrong
                types, totals that do not match the files.
            UnsafePathError: a path that could escape the workspace (invariant 7).
        """
        try:
            return cls._from_json(text)
        except CPVError as exc:
            # Same error class and fields; the message gains where it came from.
            exc.message = f"{source}: {exc.message}"
            exc.args = (exc.message,)
            if not exc.hint or exc.hint == _HINT_FIELDS:
                exc.hint = _HINT_DAMAGED
            raise

    @classmethod
    def _from_json(cls, text: str | bytes) -> Manifest:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FormatError("not UTF-8 text", hint=_HINT_DAMAGED) from exc
        if text.startswith("<<<<<<< ") or "\n>>>>>>> " in text:
            raise FormatError(
                "unresolved merge conflict markers (two machines recorded a version at once)",
                hint="keep one side with git checkout --theirs (or --ours) on the manifest file, "
                     "git add it, commit, then cpv pull")
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys,
                              parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise FormatError(f"not valid JSON ({exc})", hint=_HINT_DAMAGED) from exc
        if not isinstance(data, dict):
            raise FormatError("expected a JSON object", hint=_HINT_DAMAGED)
        version = data.get("schema_version")
        if not _is_int(version):
            raise FormatError("missing or invalid schema_version", hint=_HINT_DAMAGED)
        if version not in READ_SCHEMAS:
            raise FormatError(
                f"manifest schema_version {version} was written by a newer cpv (this one reads "
                f"{' and '.join(map(str, READ_SCHEMAS))}): upgrade cpv",
                hint="upgrade cpv (pip install -U cpv-checkpoints) to read manifests written by "
                     "a newer version",
            )
        required = _REQUIRED_KEYS if version == 1 else _REQUIRED_KEYS_V2
        missing = sorted(required - data.keys())
        if missing:
            raise FormatError(f"missing field(s): {', '.join(missing)}", hint=_HINT_DAMAGED)
        unknown = sorted(data.keys() - required - _OPTIONAL_KEYS)
        if unknown:
            raise FormatError(f"unknown field(s): {', '.join(unknown)}", hint=_HINT_DAMAGED)
        files: tuple[FileEntry, ...] | None = None
        summary: dict[str, Any] = {}
        if version == 1:
            raw_files = data["files"]
            if not isinstance(raw_files, list):
                raise FormatError("files must be a list", hint=_HINT_DAMAGED)
            files = tuple(_file_entry(raw) for raw in raw_files)
        else:
            summary = _summary(data["summary"])
        for key in ("kind", "path", "snapshot_id", "store_url", "message", "author"):
            if not isinstance(data[key], str):
                raise FormatError(f"{key} must be a string", hint=_HINT_DAMAGED)
        if not isinstance(data["metrics"], dict):
            raise FormatError("metrics must be an object", hint=_HINT_DAMAGED)
        extra = data.get("extra", {})
        if not isinstance(extra, dict):
            raise FormatError("extra must be an object", hint=_HINT_DAMAGED)
        lineage = Lineage.from_dict(data["lineage"]) if "lineage" in data else None
        params = data.get("params", {})
        if not isinstance(params, dict):
            raise FormatError("params must be an object", hint=_HINT_DAMAGED)
        line = data.get("line")
        if line is not None and not isinstance(line, str):
            raise FormatError("line must be a string", hint=_HINT_DAMAGED)
        manifest = cls(
            kind=data["kind"], path=data["path"], snapshot_id=data["snapshot_id"],
            store_url=data["store_url"], files=files, message=data["message"],
            author=data["author"], created_at=parse_timestamp(data["created_at"]),
            metrics=data["metrics"], is_dir=data["is_dir"], extra=extra,
            lineage=lineage, params=params, line=line, **summary,
        )
        if files is None:
            return manifest
        for key, actual in (("total_size", manifest.total_size),
                            ("file_count", manifest.file_count)):
            if not _is_int(data[key]) or data[key] != actual:
                raise FormatError(f"{key} is {data[key]!r} but the files add up to {actual}",
                                  hint=_HINT_DAMAGED)
        return manifest



def _summary(raw: object) -> dict[str, Any]:
    """The ``summary`` object of a schema-2 manifest as constructor arguments."""
    if not isinstance(raw, dict) or raw.keys() != _SUMMARY_KEYS:
        raise FormatError("summary must be an object with exactly "
                          f"{', '.join(sorted(_SUMMARY_KEYS))}", hint=_HINT_DAMAGED)
    counts = [raw[k] for k in ("added", "changed", "removed")]
    if all(c is None for c in counts):
        changes = None
    elif any(c is None for c in counts):
        raise FormatError("summary added/changed/removed are all numbers or all null",
                          hint=_HINT_DAMAGED)
    else:
        changes = ChangeCounts(*counts)
    return {"file_count": raw["file_count"], "total_size": raw["total_size"],
            "changes": changes}


def _file_entry(raw: object) -> FileEntry:
    if not isinstance(raw, dict) or raw.keys() != _FILE_KEYS:
        raise FormatError('each file must be an object with exactly "path", "size", "blake3"',
                          hint=_HINT_DAMAGED)
    return FileEntry(path=raw["path"], size=raw["size"], blake3=raw["blake3"])


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise FormatError(f"duplicate key {key!r}", hint=_HINT_DAMAGED)
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise FormatError(f"{name} is not allowed in a manifest", hint=_HINT_DAMAGED)


def manifest_for_files(
    *,
    kind: Kind,
    path: str,
    snapshot_id: str,
    store_url: str,
    files: Iterable[tuple[str, int, str]],
    is_dir: bool = True,
    message: str = "",
    author: str = "",
    metrics: Mapping[str, float] | None = None,
    extra: Mapping[str, ExtraValue] | None = None,
    created_at: datetime | None = None,
    lineage: Lineage | None = None,
    params: Mapping[str, str] | None = None,
) -> Manifest:
    """Build a schema-1 manifest (every file listed) from ``(path, size, blake3)`` tuples.

    What cpv wrote before pointer manifests; kept to read and test old workspaces. New
    versions are made by :func:`pointer_manifest`.
    """
    return Manifest(
        kind=kind, path=path, snapshot_id=snapshot_id, store_url=store_url,
        files=tuple(FileEntry(path=p, size=s, blake3=h) for p, s, h in files),
        is_dir=is_dir, message=message, author=author, metrics=dict(metrics or {}),
        extra=dict(extra or {}), created_at=created_at or _utc_now(),
        lineage=lineage, params=dict(params or {}),
    )


def pointer_manifest(
    *,
    kind: Kind,
    path: str,
    snapshot_id: str,
    store_url: str,
    file_count: int,
    total_size: int,
    changes: ChangeCounts | None,
    is_dir: bool = True,
    message: str = "",
    author: str = "",
    metrics: Mapping[str, float] | None = None,
    extra: Mapping[str, ExtraValue] | None = None,
    created_at: datetime | None = None,
    lineage: Lineage | None = None,
    params: Mapping[str, str] | None = None,
    line: str | None = None,
) -> Manifest:
    """Build the schema-2 manifest of a new version: the snapshot it points at, and a summary.

    ``changes`` counts files against the previous version of ``path`` (None: not known).
    """
    return Manifest(
        kind=kind, path=path, snapshot_id=snapshot_id, store_url=store_url, files=None,
        file_count=file_count, total_size=total_size, changes=changes, is_dir=is_dir,
        message=message, author=author, metrics=dict(metrics or {}), extra=dict(extra or {}),
        created_at=created_at or _utc_now(), lineage=lineage, params=dict(params or {}),
        line=line,
    )
