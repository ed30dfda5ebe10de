"""One server of each kind per session (per xdist worker), started on first use.

A server whose program cannot be had here (s3rver without node/npm) is skipped with the reason;
one that is installed but does not start fails the tests that need it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3server import S3ServerError
from tests.servers.compat import CompatServer, ServerUnavailableError, start_server


def _start(name: str, factory: pytest.TempPathFactory) -> CompatServer:
    try:
        return start_server(name, factory.mktemp(f"srv-{name}"))
    except ServerUnavailableError as exc:
        pytest.skip(f"{name}: {exc}")
    except S3ServerError as exc:
        pytest.fail(f"the {name} test server did not start: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatServer]:
    with _start("moto", tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="session")
def rclone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatServer]:
    with _start("rclone", tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="session")
def juicefs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatServer]:
    with _start("juicefs", tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="session")
def s3rver_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatServer]:
    with _start("s3rver", tmp_path_factory) as server:
        yield server


# The CLI fixtures (clean environment, `cpv` runner, bare Git remote) for the story test.
from tests.cli.conftest import bare_remote, cpv, env, home  # noqa: E402, F401
