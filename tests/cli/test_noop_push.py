"""The no-op push: an unchanged tree is answered from the stat cache, without the store.

Every test drives the real ``cpv`` against the real S3 test server. The proof that a push did
not touch the store is a dead endpoint: with ``CPV_ENDPOINT_URL`` pointing at a closed port a
push that needed one request would fail, and ``PYTHONPROFILEIMPORTTIME`` shows whether boto3
(or GitPython, tqdm, the transfer engine, pydantic, pathspec) was even imported. Every way a
file can change must send the push down the full path, which records the change as a new
version.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from tests.cli.conftest import Result, Runner

pytestmark = pytest.mark.integration

_OLD = time.time() - 3600  # well outside the stat cache's two-second racy window


def _dead_endpoint() -> str:
    """An address where nothing listens (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _write(path: Path, data: bytes, *, old: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if old:
        os.utime(path, (_OLD, _OLD))


@pytest.fixture
def pushed(cpv: Runner, tmp_path: Path, s3_env: dict[str, str], s3_url: str) -> Path:
    """A workspace on the S3 store whose model/ and data/ were pushed once (files not racy)."""
    ws = tmp_path / "ws"
    cpv("init", str(ws), "--store", s3_url, "-q", env_extra=s3_env)
    _write(ws / "model" / "weights.bin", os.urandom(300_000))
    _write(ws / "model" / "config.json", b'{"hidden": 64}')
    for i in range(20):
        _write(ws / "data" / "train" / f"{i:03}.txt", f"sample {i}\n".encode())
    (ws / "model" / "latest").symlink_to("weights.bin")
    cpv("push", "-m", "first", cwd=ws, env_extra=s3_env)
    return ws


def _push(cpv: Runner, ws: Path, env: dict[str, str], *, expect: int | None = 0) -> Result:
    return cpv("push", "--json", cwd=ws, env_extra=env, expect=expect)


def _offline(s3_env: dict[str, str]) -> dict[str, str]:
    return {**s3_env, "CPV_ENDPOINT_URL": _dead_endpoint(), "PYTHONPROFILEIMPORTTIME": "1"}


def _changed(result: Result) -> dict[str, bool]:
    return {r["kind"]: r["changed"] for r in result.json()["results"]}


def _imported(result: Result) -> set[str]:
    """The modules the run imported, from ``-X importtime`` lines (``... | cumulative | name``)."""
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


#: What the no-op path must not load (docs/benchmarks.md, "No-op push"): the S3 client,
#: GitPython (git runs as a plain subprocess), progress bars, the webhook client, the engine's
#: transfer side and the store's version records (the decision needs the stat cache and the
#: baseline only), the config's schema (pydantic: the answers of the configuration validated
#: for the same inputs are remembered) and pathspec (the ignore rules' prefilter is too).
_NOT_ON_THE_NOOP_PATH = frozenset({
    "boto3", "botocore", "git", "tqdm", "urllib.request", "cpv.engine.transfer",
    "cpv.engine.push", "cpv.engine.pull", "cpv.engine.repository", "cpv.engine.gc",
    "cpv.engine.roots", "cpv.engine.sessions", "cpv.config", "pydantic", "pydantic_core",
    "pathspec", "importlib.metadata",
})


def test_unchanged_tree_needs_no_store_and_no_boto3(
    cpv: Runner, pushed: Path, s3_env: dict[str, str]
) -> None:
    offline = _offline(s3_env)
    first = _push(cpv, pushed, offline)  # a new endpoint: the config is validated once
    assert "pydantic" in _imported(first)
    assert not _imported(first) & {"boto3", "botocore"}
    result = _push(cpv, pushed, offline)
    assert _changed(result) == {"model": False, "data": False}
    assert all(r["uploaded_bytes"] == 0 and r["commit"] is None
               for r in result.json()["results"])
    imported = _imported(result)
    assert "cpv.engine.statcache" in imported  # the parse works: the decision was made here
    assert not imported & _NOT_ON_THE_NOOP_PATH, sorted(imported & _NOT_ON_THE_NOOP_PATH)
    # status needs no store either, and sees a clean tree
    status = cpv("status", "--json", cwd=pushed, env_extra=offline)
    assert all(not k["changed"] for k in status.json()["kinds"].values())
    imported = _imported(status)
    assert "cpv.engine.statcache" in imported
    assert not imported & _NOT_ON_THE_NOOP_PATH, sorted(imported & _NOT_ON_THE_NOOP_PATH)

    # The remembered answers hold for exactly the inputs they were validated with: a setting
    # edited in a file or given by a variable is validated (and refused) as on any command,
    # and a new cache folder is the one the stat cache is read from.
    config = pushed / ".cpv" / "config.json"
    saved = config.read_text()
    config.write_text(json.dumps({**json.loads(saved), "aws": {"bukcet": "x"}}))
    bad = _push(cpv, pushed, offline, expect=1)
    assert "unknown setting aws.bukcet" in bad.json()["error"]["message"], str(bad)
    config.write_text(saved)
    bad = _push(cpv, pushed, {**offline, "CPV_TEAM": "no team"}, expect=1)
    assert "invalid team" in bad.json()["error"]["message"], str(bad)
    # A new cache folder is the one used: a push that has something to send (a new file) fills
    # it with its stat cache and index, not the folder the remembered answers were made for.
    cache2 = pushed.parent / "cache2"
    _write(pushed / "data" / "train" / "new.txt", b"one more sample\n")
    moved = _push(cpv, pushed, {**s3_env, "CPV_CACHE_DIR": str(cache2)})
    assert _changed(moved) == {"model": False, "data": True}
    assert cache2.is_dir() and any(p.is_file() for p in cache2.rglob("*")), str(moved)
    time.sleep(2.1)  # the new file settles (a racy file is never vouched for)
    assert _push(cpv, pushed, s3_env)  # records it as settled
    assert _changed(_push(cpv, pushed, offline)) == {"model": False, "data": False}


@pytest.mark.parametrize("change", ["touched", "same_size_same_mtime", "replaced", "deleted",
                                    "added", "link_retargeted", "chmod"])
def test_every_change_takes_the_full_push(
    cpv: Runner, pushed: Path, s3_env: dict[str, str], change: str
) -> None:
    weights = pushed / "model" / "weights.bin"
    if change == "touched":  # same bytes, new mtime: hashed again, and found unchanged
        os.utime(weights, (_OLD + 5, _OLD + 5))
    elif change == "same_size_same_mtime":  # edited in place, stamp put back but for ctime
        st = weights.stat()
        _write(weights, os.urandom(st.st_size), old=False)
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "replaced":  # atomic save of other bytes, same size and mtime
        st = weights.stat()
        tmp = weights.with_suffix(".tmp")
        _write(tmp, os.urandom(st.st_size), old=False)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, weights)
    elif change == "deleted":
        (pushed / "data" / "train" / "007.txt").unlink()
    elif change == "added":
        _write(pushed / "data" / "train" / "new.txt", b"new sample\n")
    elif change == "link_retargeted":
        (pushed / "model" / "latest").unlink()
        (pushed / "model" / "latest").symlink_to("config.json")
    elif change == "chmod":
        weights.chmod(0o600)

    # Offline, the push must go to the store (and fail there), never answer "unchanged".
    offline = _push(cpv, pushed, _offline(s3_env), expect=None)
    assert offline.code != 0, str(offline)
    assert "botocore" in offline.stderr

    result = _push(cpv, pushed, s3_env)
    changed = _changed(result)
    if change == "touched":
        assert changed == {"model": False, "data": False}  # hashed, same bytes
        assert _changed(_push(cpv, pushed, _offline(s3_env))) == {"model": False, "data": False}
    elif change in ("deleted", "added"):
        assert changed == {"model": False, "data": True}
    else:
        assert changed == {"model": True, "data": False}
    status = cpv("status", "--json", cwd=pushed, env_extra=s3_env).json()
    assert all(not k["changed"] for k in status["kinds"].values())


def test_racy_file_is_never_vouched_for(
    cpv: Runner, tmp_path: Path, s3_env: dict[str, str], s3_url: str
) -> None:
    """A file hashed less than two seconds after its mtime has no stat-cache entry: an edit in
    the same clock tick could share its stamp. The next push reads it again. (An mtime in the
    future stands for "just written": start-up alone may take two seconds on a busy machine.)"""
    ws = tmp_path / "ws"
    cpv("init", str(ws), "--store", s3_url, "-q", env_extra=s3_env)
    _write(ws / "model" / "weights.bin", os.urandom(50_000), old=False)
    soon = time.time() + 600
    os.utime(ws / "model" / "weights.bin", (soon, soon))
    cpv("push", cwd=ws, env_extra=s3_env)
    offline = _push(cpv, ws, _offline(s3_env), expect=None)
    assert offline.code != 0, str(offline)
    # Once the file is old enough to be cached, the no-op push answers offline.
    os.utime(ws / "model" / "weights.bin", (_OLD, _OLD))
    assert _changed(_push(cpv, ws, s3_env)) == {"model": False}
    assert _changed(_push(cpv, ws, _offline(s3_env))) == {"model": False}


def test_message_metrics_or_another_store_take_the_full_push(
    cpv: Runner, pushed: Path, s3_env: dict[str, str], s3_url: str
) -> None:
    """What the fast path cannot answer alone: a new message or metrics (a new version of the
    same bytes), or a workspace now pointed at another store (the bytes are not there)."""
    offline = _offline(s3_env)
    assert cpv("push", "model", "-m", "second", cwd=pushed, env_extra=offline,
               expect=None).code != 0
    assert cpv("push", "model", "--metric", "loss=0.5", cwd=pushed, env_extra=offline,
               expect=None).code != 0
    cpv("config", "set", "store.url", s3_url + "-other", cwd=pushed, env_extra=s3_env)
    assert _push(cpv, pushed, offline, expect=None).code != 0
    moved = _push(cpv, pushed, s3_env).json()["results"]
    assert all(r["uploaded_bytes"] > 0 for r in moved)
