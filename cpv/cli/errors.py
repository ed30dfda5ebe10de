"""The one table that turns library errors into a message and an exit code.

Commands never catch library errors themselves; :func:`exit_code_for` is used once, in
``cpv.cli.main``. Exit codes (also in ``docs/cli.md`` and every command's ``--help``):

====  ==========================================================
0     success
1     error (any cpv error without a more specific code)
2     usage error (bad arguments)
3     partial failure: some objects were not transferred
4     integrity failure: damaged or missing data found (verify, pull)
10    no store / not a cpv workspace
11    store locked by another process
12    credentials or access problem
13    store unreachable (network, endpoint, TLS): retry when it answers
14    the S3 server lacks a feature cpv needs (cpv doctor shows which)
130   interrupted (Ctrl-C)
====  ==========================================================
"""

from __future__ import annotations

from cpv.errors import (
    CPVError,
    FormatError,
    IntegrityError,
    InvalidAliasError,
    NoStoreError,
    NotAWorkspaceError,
    NothingMatchedError,
    StoreAccessError,
    StoreLockedError,
    StoreUnreachableError,
    TrackedPathError,
    TransferError,
    UnknownVersionError,
    UnsupportedFeatureError,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTEGRITY = 4
EXIT_NO_STORE = 10
EXIT_LOCKED = 11
EXIT_ACCESS = 12
EXIT_UNREACHABLE = 13
EXIT_UNSUPPORTED = 14
EXIT_INTERRUPTED = 130

_TABLE: tuple[tuple[type[CPVError], int], ...] = (
    (IntegrityError, EXIT_INTEGRITY),
    (TransferError, EXIT_PARTIAL),
    (NoStoreError, EXIT_NO_STORE),
    (NotAWorkspaceError, EXIT_NO_STORE),
    (StoreLockedError, EXIT_LOCKED),
    (StoreAccessError, EXIT_ACCESS),
    (StoreUnreachableError, EXIT_UNREACHABLE),
    (UnsupportedFeatureError, EXIT_UNSUPPORTED),
    (NothingMatchedError, EXIT_USAGE),
    (InvalidAliasError, EXIT_USAGE),
    (UnknownVersionError, EXIT_USAGE),
    (TrackedPathError, EXIT_USAGE),
    (FormatError, EXIT_ERROR),
)


def exit_code_for(exc: CPVError) -> int:
    for cls, code in _TABLE:
        if isinstance(exc, cls):
            return code
    return EXIT_ERROR
