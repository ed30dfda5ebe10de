"""Every error cpv raises on purpose, as one tree.

Foreign errors (botocore, GitPython, OSError) are translated at the adapter that meets them,
with ``raise ... from exc``, so callers can ``except CPVError`` and the CLI can map each class
to one line and an exit code. Each error carries the fields a program needs (``key``,
``path``, ``tag``...) and a ``hint``: what the user should do next.

::

    CPVError
    ├── ConfigError (ValueError)        bad or missing configuration
    ├── StoreError
    │   ├── ObjectNotFoundError         .key (also a KeyError-free FileNotFoundError)
    │   ├── StoreAccessError            credentials, permissions, missing bucket
    │   ├── StoreUnreachableError       endpoint does not answer
    │   ├── StoreLockedError            .holder
    │   ├── PreconditionFailedError     conditional write lost a race (.key)
    │   ├── UnsupportedFeatureError     the S3-compatible server lacks a feature (.feature)
    │   └── TransientStoreError         retryable; raised once the retry budget is spent
    ├── NoStoreError                    no cpv store at this location (run init)
    ├── FormatError                     unknown format version, corrupt footer/index/snapshot
    ├── MigrationNeededError            the store predates roots; gc waits for a migration
    ├── ForgetPolicyError (ValueError)  a forget policy that keeps nothing or is inconsistent
    ├── NothingMatchedError (ValueError)  a path pattern selects no file (a usage error)
    ├── IntegrityError                  .object_id .expected .actual
    ├── UnsafePathError (ValueError)    .path: escapes the workspace (invariant 7)
    │   └── UnsupportedPathError        .path: the user's own tree holds what cpv cannot push
    ├── SourceChangedError              a file changed while it was being pushed
    ├── LocalIOError                    a local file cannot be read or written (.path)
    ├── PathNotFoundError (FileNotFoundError)  .path: a version holds no such file
    ├── NotAFileError (IsADirectoryError)      .path: a version's folder opened as a file
    ├── TransferError                   some objects could not be moved (.failures)
    ├── SessionError                    a many-writers session (.session)
    │   ├── MissingPartsError           .missing: writers that have not pushed their part
    │   ├── SessionConflictError        a session id reused with other content
    │   └── SessionCommittedError       .holder: another coordinator committed it
    ├── CheckpointError                 a background version from a training loop failed
    └── VersioningError
        ├── NotAWorkspaceError
        ├── TagExistsError              .tag
        ├── TagNotFoundError            .tag
        │   └── UnknownVersionError (ValueError)  a question about no version (exit 2)
        ├── InvalidTagError             .tag
        ├── InvalidAliasError (ValueError)  bad, shadowing or unknown alias (exit 2)
        ├── DirtyWorkspaceError         .paths
        └── GitRemoteError
"""

from __future__ import annotations

from collections.abc import Sequence


class CPVError(Exception):
    """Root of every error cpv raises on purpose.

    ``str(err)`` is the one-line message; ``hint`` says what to do about it.
    """

    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """The message and hint on one line, as the CLI prints them."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(CPVError, ValueError):
    """Configuration is missing, malformed or inconsistent."""


class StoreError(CPVError):
    """The object store refused or failed an operation."""


class ObjectNotFoundError(StoreError):
    """A key that should exist in the store does not."""

    def __init__(self, key: str, *, message: str | None = None, hint: str | None = None) -> None:
        super().__init__(message or f"object not found in store: {key}", hint=hint)
        self.key = key


class StoreAccessError(StoreError):
    """Credentials are missing or wrong, access is denied, or the bucket does not exist."""


class StoreUnreachableError(StoreError):
    """The store's endpoint does not answer."""

    default_hint = "check the endpoint URL and that the server is running"


class StoreLockedError(StoreError):
    """Another process holds an exclusive lock on the store."""

    def __init__(self, message: str, *, holder: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder = holder


class PreconditionFailedError(StoreError):
    """A conditional write (create-if-absent) found the key already present."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object already exists: {key}")
        self.key = key


class UnsupportedFeatureError(StoreError):
    """The server behind the store does not implement (or silently ignores) a feature cpv needs
    for this operation, and there is no safe way around it (``docs/store-contract.md``)."""

    default_hint = "see the compatibility table in docs/store-contract.md"

    def __init__(self, message: str, *, feature: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.feature = feature


class TransientStoreError(StoreError):
    """A retryable failure (throttling, reset, 5xx) that outlived its retry budget."""

    default_hint = "the store is overloaded or the network is flaky; re-run, it resumes"


class NoStoreError(CPVError):
    """No cpv store exists at the given location."""

    default_hint = "create one first (cpv init, or Repository.init)"


class FormatError(CPVError):
    """A stored object is not in a format this version of cpv understands, or is damaged."""


class MigrationNeededError(CPVError):
    """The store holds snapshots but records no roots yet: gc cannot know what is live."""

    default_hint = "migrate the store once so its existing snapshots are recorded as roots"


class ForgetPolicyError(CPVError, ValueError):
    """A forget policy keeps nothing or contradicts itself; nothing was forgotten."""

    default_hint = "give at least one keep rule (keep last N, keep within D days, keep best K)"


class NothingMatchedError(CPVError, ValueError):
    """A path pattern selects no file of the version; nothing was changed (exit 2, usage)."""


class TrackedPathError(CPVError, ValueError):
    """A path cannot be tracked as asked (outside the workspace, inside ``.git``/``.cpv``,
    nested in or holding another tracked path, a version-line name taken); nothing was
    changed (exit 2, usage)."""


class IntegrityError(CPVError):
    """Bytes read back do not hash to the id they are stored under."""

    default_hint = "the store holds damaged data; run 'cpv verify' to see what is affected"

    def __init__(
        self,
        message: str,
        *,
        object_id: str = "",
        expected: str = "",
        actual: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.object_id = object_id
        self.expected = expected
        self.actual = actual


class TreeDamagedError(IntegrityError, FormatError):
    """A format-2 snapshot's tree cannot be read: a node or the pack holding it is gone or bad.

    Damage to the user (exit 4, like a lost chunk); to gc and verify, which catch FormatError, a
    snapshot whose needs are unknown, so gc deletes nothing. ``missing_pack`` names a pack that
    is gone, when that is the cause.
    """

    default_hint = ("cpv verify lists the affected versions; pushing the same files again "
                    "rewrites the tree, and cpv repair re-uploads what this machine's files hold")

    def __init__(self, message: str, *, object_id: str = "", missing_pack: str = "",
                 hint: str | None = None) -> None:
        super().__init__(message, object_id=object_id, hint=hint)
        self.missing_pack = missing_pack


class UnsafePathError(CPVError, ValueError):
    """A path breaks the path rule of :mod:`cpv.pathrules` (invariant 7).

    From a manifest or snapshot it is malformed or hostile input; from the user's own tree (a
    push) it is a name cpv cannot version, and the hint says what to do instead.
    """

    default_hint = "the manifest or snapshot is malformed or hostile; it was not applied"

    def __init__(self, path: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"unsafe path {path!r}: {reason}", hint=hint)
        self.path = path


class UnsupportedPathError(UnsafePathError):
    """The tree being pushed holds a name, folder or link cpv cannot version.

    Not hostile input but the user's own files (a nested Git repository, a name that is not
    UTF-8, a symlink to outside the tree), so the message says so and the hint gives the way
    out. Raised by the push scan, before anything is uploaded.
    """

    def __init__(self, path: str, reason: str, *, hint: str) -> None:
        super().__init__(path, reason, hint=hint)
        self.message = f"cannot push {path!r}: {reason}"
        self.args = (self.message,)


class SourceChangedError(CPVError):
    """A file changed while cpv was reading it, so its chunks would not match its hash."""

    default_hint = (
        "wait until the file is fully written (e.g. the training step finished), then re-run"
    )

    def __init__(self, path: str) -> None:
        super().__init__(f"file changed while it was being read: {path}")
        self.path = path


class LocalIOError(CPVError):
    """A local file or folder cannot be read or written."""

    def __init__(self, message: str, *, path: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class PathNotFoundError(CPVError, FileNotFoundError):
    """A path that a version (snapshot) does not hold.

    Also a :class:`FileNotFoundError`, so code that reads through ``cpv.open`` or the ``cpv://``
    filesystem (pandas, fsspec) handles it like any missing file.
    """

    default_hint = "list the version's files (cpv.lazy.list_files) or check the path"

    def __init__(self, path: str, *, where: str = "this version", hint: str | None = None) -> None:
        super().__init__(f"not in {where}: {path}", hint=hint)
        self.path = path


class NotAFileError(CPVError, IsADirectoryError):
    """A folder of a version was opened as a file."""

    default_hint = "open a file inside it; list the folder's files first"

    def __init__(self, path: str, *, hint: str | None = None) -> None:
        super().__init__(f"is a folder, not a file: {path}", hint=hint)
        self.path = path


class TransferError(CPVError):
    """Some objects could not be transferred; nothing that depends on them was written."""

    default_hint = "re-run the same command: what was already uploaded is not sent again"

    def __init__(self, message: str, *, failures: Sequence[tuple[str, BaseException]] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


class VersioningError(CPVError):
    """A Git-side versioning operation cannot be done."""


class NotAWorkspaceError(VersioningError):
    """The folder is not a cpv workspace."""

    default_hint = "run 'cpv init' (or import_model_init) first"


class TagExistsError(VersioningError):
    """The version tag already exists."""

    def __init__(self, tag: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"tag {tag} already exists",
            hint=hint or "choose another version, or pass force=True / --force to move it",
        )
        self.tag = tag


class TagNotFoundError(VersioningError):
    """No such version tag."""

    def __init__(self, tag: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"no version {tag}", hint=hint or "list versions with 'cpv versions'"
        )
        self.tag = tag


class UnknownVersionError(TagNotFoundError, ValueError):
    """A version a question names does not exist (``cpv lineage v9.9``): bad input, exit 2,
    where a command that would act on it (checkout, pull) fails with exit 1."""


class InvalidAliasError(VersioningError, ValueError):
    """An alias that cannot be made or used: a bad name, one that shadows a version tag or a
    branch, an unknown alias, or a target that is not a version. Bad input: exit 2."""


class InvalidTagError(VersioningError, ValueError):
    """A version string is not of the form v{major}.{minor}."""

    def __init__(self, tag: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"invalid version tag {tag!r}",
            hint=hint or "use v{major}.{minor}, e.g. v1.0 or v0.10",
        )
        self.tag = tag


class DirtyWorkspaceError(VersioningError):
    """Local changes would be lost or mixed into a version."""

    def __init__(self, message: str, *, paths: Sequence[str] = (), hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.paths = list(paths)


class GitRemoteError(VersioningError):
    """The Git remote cannot be reached or refused a push/fetch."""


class SessionError(CPVError):
    """A many-writers session cannot be pushed to or committed as asked (``.session``)."""

    def __init__(self, message: str, *, session: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.session = session


class MissingPartsError(SessionError):
    """The coordinator was asked to commit a session some writers have not finished (``.missing``).

    Nothing is committed: a version is all of a checkpoint or nothing.
    """

    def __init__(self, message: str, *, session: str, missing: Sequence[str],
                 hint: str | None = None) -> None:
        super().__init__(message, session=session, hint=hint)
        self.missing = list(missing)


class SessionConflictError(SessionError):
    """A session id was reused with other content, or two writers disagree about one file."""


class SessionCommittedError(SessionError):
    """Another coordinator committed (or is committing) the session (``.holder``)."""

    def __init__(self, message: str, *, session: str, holder: str = "",
                 snapshot_id: str = "", hint: str | None = None) -> None:
        super().__init__(message, session=session, hint=hint)
        self.holder = holder
        self.snapshot_id = snapshot_id


class CheckpointError(CPVError):
    """A background version of a training checkpoint failed (``.step``; the cause is chained).

    Raised on the next call to the :class:`~cpv.checkpointer.Checkpointer` after the failure,
    or at its close, so a training loop learns of it without being stopped by it.
    """

    def __init__(self, message: str, *, step: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.step = step
