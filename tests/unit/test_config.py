"""CPVConfig: precedence, validation, secret-free persistence, AWS profile and SSH setup.

Every test passes explicit paths and ``env`` so nothing reads the real home directory or the
process environment. SSH tests run the real ``ssh-keygen`` and check the written config with
the real ``ssh -G``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cpv.config import (
    ENV_OVERRIDES,
    AwsSection,
    CPVConfig,
    MiB,
    StoreLocation,
    default_config_path,
    redact_url,
    update_config_file,
    validate_model_name,
    validate_team_name,
    workspace_config_path,
)
from cpv.errors import ConfigError, CPVError

SSH_KEYGEN = shutil.which("ssh-keygen")
SSH = shutil.which("ssh")


def write_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fake home directory; every test's env points HOME here."""
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {"HOME": str(home)}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------------- defaults & load


def test_defaults_without_any_file(tmp_path: Path, env: dict[str, str], home: Path) -> None:
    cfg = CPVConfig.load(tmp_path / "missing.json", env=env)
    assert cfg == CPVConfig()
    assert cfg.transfer.workers == 8
    assert cfg.transfer.max_inflight_bytes == 256 * MiB
    assert cfg.transfer.part_size == 16 * MiB
    assert cfg.transfer.pack_size == 64 * MiB
    assert cfg.git.branch == "main"
    assert cfg.aws.prefix == ""
    assert cfg.cache_dir == home / ".cache" / "cpv"
    assert cfg.sources == ()


def test_default_paths_follow_env(home: Path, tmp_path: Path) -> None:
    assert default_config_path(env={"HOME": str(home)}) == home / ".cpv" / "config.json"
    other = tmp_path / "elsewhere.json"
    assert default_config_path(env={"HOME": str(home), "CPV_CONFIG": str(other)}) == other
    assert workspace_config_path(tmp_path) == tmp_path / ".cpv" / "config.json"


def test_load_without_path_reads_home_file(home: Path) -> None:
    write_json(home / ".cpv" / "config.json", {"team": "AI-Convo"})
    assert CPVConfig.load(env={"HOME": str(home)}).team == "AI-Convo"


def test_cache_dir_xdg_and_explicit(tmp_path: Path, env: dict[str, str]) -> None:
    xdg = tmp_path / "xdg"
    cfg = CPVConfig.load(tmp_path / "none.json", env={**env, "XDG_CACHE_HOME": str(xdg)})
    assert cfg.cache_dir == xdg / "cpv"
    # A relative XDG_CACHE_HOME is ignored, as the XDG spec says.
    rel = CPVConfig.load(tmp_path / "none.json", env={**env, "XDG_CACHE_HOME": "rel"})
    assert rel.cache_dir == Path(env["HOME"]) / ".cache" / "cpv"
    explicit = CPVConfig.load(
        tmp_path / "none.json", env={**env, "CPV_CACHE_DIR": "~/big-disk/cache"}
    )
    assert explicit.cache_dir == Path(env["HOME"]) / "big-disk" / "cache"


def test_precedence_user_workspace_env_explicit(tmp_path: Path, env: dict[str, str]) -> None:
    user = write_json(
        tmp_path / "user.json",
        {
            "aws": {"profile": "user-p", "bucket": "user-bucket", "region": "eu-west-1"},
            "transfer": {"workers": 2, "part_size": 8 * MiB},
            "team": "AI-User",
        },
    )
    ws = tmp_path / "ws"
    write_json(
        workspace_config_path(ws),
        {"aws": {"profile": "ws-p", "prefix": "/AI-Convo/"}, "transfer": {"workers": 3}},
    )
    cfg = CPVConfig.load(
        user, workspace=ws, env={**env, "CPV_AWS_PROFILE": "env-p", "CPV_WORKERS": "5"}
    )
    # Section-wise deep merge: the workspace file overrides key by key, not whole sections.
    assert cfg.aws.bucket == "user-bucket"
    assert cfg.aws.region == "eu-west-1"
    assert cfg.aws.prefix == "AI-Convo"  # normalised: no leading/trailing slash
    assert cfg.transfer.part_size == 8 * MiB
    assert cfg.team == "AI-User"
    # Environment beats both files.
    assert cfg.aws.profile == "env-p"
    assert cfg.transfer.workers == 5
    assert cfg.sources == (
        str(user),
        str(workspace_config_path(ws)),
        "environment variable CPV_AWS_PROFILE",
        "environment variable CPV_WORKERS",
    )
    # Explicit arguments beat everything.
    explicit = cfg.with_overrides({"aws.profile": "arg-p", "transfer.workers": None})
    assert explicit.aws.profile == "arg-p"
    assert explicit.transfer.workers == 5  # None means "not given"
    assert explicit.aws.bucket == "user-bucket"
    assert cfg.aws.profile == "env-p"  # the original is frozen and unchanged


def test_workspace_file_without_user_file(tmp_path: Path, env: dict[str, str]) -> None:
    ws = tmp_path / "ws"
    write_json(workspace_config_path(ws), {"model": "faster-whisper"})
    cfg = CPVConfig.load(tmp_path / "none.json", workspace=ws, env=env)
    assert cfg.model == "faster-whisper"


def test_every_documented_env_var_maps_to_a_setting(tmp_path: Path, env: dict[str, str]) -> None:
    values = {
        "CPV_STORE_URL": "s3://env-bucket/p",
        "CPV_AWS_PROFILE": "p1",
        "CPV_AWS_REGION": "us-east-1",
        "CPV_AWS_BUCKET": "b-env",
        "CPV_AWS_PREFIX": "pre",
        "CPV_ENDPOINT_URL": "http://127.0.0.1:8333",
        "CPV_CACHE_DIR": "/var/cache/cpv",
        "CPV_GIT_REMOTE": "file:///srv/git/repo.git",
        "CPV_GIT_BRANCH": "dev",
        "CPV_GIT_SSH_KEY": "~/.ssh/id_cpv",
        "CPV_WORKERS": "3",
        "CPV_NOTIFY_WEBHOOK": "https://hooks.example.com/T/B/x",
        "CPV_TEAM": "AI-Vision",
        "CPV_MODEL": "yolov8",
    }
    assert set(values) == set(ENV_OVERRIDES)
    cfg = CPVConfig.load(tmp_path / "none.json", env={**env, **values})
    dumped = cfg.model_dump()
    for var, dotted in ENV_OVERRIDES.items():
        section, _, key = dotted.partition(".")
        got = dumped[section][key] if key else dumped[section]
        assert str(got) == values[var], var


def test_empty_env_var_means_unset(tmp_path: Path, env: dict[str, str]) -> None:
    user = write_json(tmp_path / "u.json", {"aws": {"profile": "keep"}})
    cfg = CPVConfig.load(user, env={**env, "CPV_AWS_PROFILE": ""})
    assert cfg.aws.profile == "keep"


def test_unknown_cpv_env_var_is_reported(
    tmp_path: Path, env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cpv.config"):
        cfg = CPVConfig.load(tmp_path / "none.json", env={**env, "CPV_STORE_ULR": "s3://b1/x"})
    assert cfg.store.url is None
    assert "CPV_STORE_ULR" in caplog.text
    assert "CPV_STORE_URL" in caplog.text  # the suggestion


def test_load_ignores_process_environment_when_env_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    monkeypatch.setenv("CPV_AWS_PROFILE", "from-process")
    assert CPVConfig.load(tmp_path / "none.json", env=env).aws.profile is None
    assert CPVConfig.load(tmp_path / "none.json", env=None).aws.profile == "from-process"


# ---------------------------------------------------------------------------- errors


def load_error(tmp_path: Path, doc: Any, env: dict[str, str] | None = None) -> ConfigError:
    path = write_json(tmp_path / "config.json", doc)
    with pytest.raises(ConfigError) as info:
        CPVConfig.load(path, env=env or {"HOME": str(tmp_path)})
    return info.value


def test_typo_fails_loudly_with_suggestion(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"aws": {"endpiont_url": "http://127.0.0.1:1"}})
    assert isinstance(err, CPVError)
    assert str(err) == f"unknown setting aws.endpiont_url in {tmp_path / 'config.json'}"
    assert "did you mean 'endpoint_url'" in err.hint
    top = load_error(tmp_path, {"tranfser": {}})
    assert "unknown setting tranfser" in str(top)
    assert "'transfer'" in top.hint


def test_error_names_field_and_source_on_one_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, {"transfer": {"workers": 0}})
    assert "transfer.workers" in str(err)
    assert str(tmp_path / "config.json") in str(err)
    assert "\n" not in err.one_line()
    env_err = load_error(tmp_path, {}, env={"HOME": str(tmp_path), "CPV_WORKERS": "lots"})
    assert "transfer.workers" in str(env_err)
    assert "environment variable CPV_WORKERS" in str(env_err)


def test_error_from_workspace_file_names_that_file(tmp_path: Path, env: dict[str, str]) -> None:
    user = write_json(tmp_path / "user.json", {"transfer": {"workers": 4}})
    ws = tmp_path / "ws"
    ws_file = write_json(workspace_config_path(ws), {"transfer": {"part_size": 1}})
    with pytest.raises(ConfigError, match=r"transfer\.part_size") as info:
        CPVConfig.load(user, workspace=ws, env=env)
    assert str(ws_file) in str(info.value)
    assert str(user) not in str(info.value)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "aws": {\n    "profile": "x",\n  }\n}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        CPVConfig.load(path, env={})
    assert str(path) in str(info.value)
    assert "line 4" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('{"team": "AI-A", "team": "AI-B"}', "sets 'team' twice"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_malformed_files(tmp_path: Path, raw: str | bytes, fragment: str) -> None:
    path = tmp_path / "config.json"
    if isinstance(raw, bytes):
        path.write_bytes(raw)
    else:
        path.write_text(raw, encoding="utf-8")
    with pytest.raises(ConfigError, match=fragment):
        CPVConfig.load(path, env={})


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("  \n", encoding="utf-8")
    assert CPVConfig.load(path, env={}) == CPVConfig()


def test_directory_as_config_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        CPVConfig.load(tmp_path, env={})


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"aws": {"bucket": "Not_A_Bucket"}}, "aws.bucket"),
        ({"aws": {"prefix": "a/../b"}}, "aws.prefix"),
        ({"aws": {"endpoint_url": "ftp://x"}}, "aws.endpoint_url"),
        ({"aws": {"region": "EU WEST"}}, "aws.region"),
        ({"store": {"url": "gs://bucket/x"}}, "store.url"),
        ({"store": {"url": "file://relative/x"}}, "store.url"),
        ({"store": {"url": "s3:///nobucket"}}, "store.url"),
        ({"git": {"branch": "two words"}}, "git.branch"),
        ({"git": {"remote_url": "svn://host/repo"}}, "git.remote_url"),
        ({"git": {"ssh_key_path": "relative/key"}}, "git.ssh_key_path"),
        ({"git": {"ssh_key_path": "/home/u/.ssh/id.pub"}}, "git.ssh_key_path"),
        ({"git": {"ssh_host_alias": "bad alias"}}, "git.ssh_host_alias"),
        ({"cache": {"dir": "relative"}}, "cache.dir"),
        ({"transfer": {"workers": 1000}}, "transfer.workers"),
        ({"transfer": {"part_size": 1 * MiB}}, "transfer.part_size"),
        ({"transfer": {"pack_size": 0}}, "transfer.pack_size"),
        ({"transfer": {"max_inflight_bytes": 8 * MiB, "part_size": 16 * MiB}}, "transfer"),
        ({"transfer": {"workers": "eight"}}, "transfer.workers"),
        ({"notify": {"webhook_url": "not a url"}}, "notify.webhook_url"),
        ({"aws": "profile-name"}, "aws"),
    ],
)
def test_invalid_values(tmp_path: Path, doc: dict[str, Any], fragment: str) -> None:
    err = load_error(tmp_path, doc)
    assert str(err).startswith(f"invalid {fragment} in ")
    assert err.hint


@pytest.mark.parametrize("team", ["AI-Convo", "AI-NLP", "AI-Vision_2", "AI-a-b"])
def test_valid_team_names(team: str) -> None:
    assert validate_team_name(team) == team
    assert CPVConfig(team=team).team == team


@pytest.mark.parametrize("team", ["Convo", "ai-convo", "AI-", "AI-Con vo", "AI--x", "AI-x/y"])
def test_invalid_team_names(tmp_path: Path, team: str) -> None:
    with pytest.raises(ConfigError, match="AI-<Team>") as info:
        validate_team_name(team)
    assert "AI-Convo" in info.value.hint
    err = load_error(tmp_path, {"team": team})
    assert str(err).startswith("invalid team in ")


@pytest.mark.parametrize("model", ["faster-whisper", "yolov8", "gpt.2_small", "0x"])
def test_valid_model_names(model: str) -> None:
    assert validate_model_name(model) == model


@pytest.mark.parametrize("model", ["Faster-Whisper", "my model", "-x", "", "a/b", "x" * 101])
def test_invalid_model_names(tmp_path: Path, model: str) -> None:
    with pytest.raises(ConfigError, match="lowercase"):
        validate_model_name(model)
    assert str(load_error(tmp_path, {"model": model})).startswith("invalid model in ")


def test_direct_construction_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^invalid team: "):
        CPVConfig(team="nope")
    with pytest.raises(ConfigError, match=r"^invalid bucket: "):
        AwsSection(bucket="UPPER")
    with pytest.raises(ConfigError, match=r"^secret looks like a credential"):
        AwsSection(secret="x")  # type: ignore[call-arg]


def test_equality_and_hash_ignore_provenance(tmp_path: Path) -> None:
    path = write_json(tmp_path / "c.json", {"team": "AI-A"})
    loaded = CPVConfig.load(path, env={})
    built = CPVConfig(team="AI-A")
    assert loaded == built
    assert len({loaded, built}) == 1
    assert loaded != CPVConfig(team="AI-B")


def test_group_readable_file_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_json(tmp_path / "c.json", {"team": "AI-A"})
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="cpv.config"):
        CPVConfig.load(path, env={})
    assert "chmod 600" in caplog.text


def test_frozen() -> None:
    cfg = CPVConfig()
    with pytest.raises(ValueError, match="frozen"):
        cfg.team = "AI-X"
    with pytest.raises(ValueError, match="frozen"):
        cfg.aws.profile = "x"


# ---------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "doc",
    [
        {"aws": {"aws_secret_access_key": "abc"}},
        {"aws": {"aws_access_key_id": "abc"}},
        {"git": {"password": "hunter2"}},
        {"notify": {"token": "abc"}},
        {"aws_session_token": "abc"},
        # A secret key next to another mistake is still the one reported.
        {"team": "bad", "git": {"api_key": "abc"}},
    ],
)
def test_credential_keys_are_refused(tmp_path: Path, doc: dict[str, Any]) -> None:
    err = load_error(tmp_path, doc)
    assert "looks like a credential" in str(err)
    assert "never stores credentials" in err.hint
    assert "abc" not in err.one_line()
    assert "hunter2" not in err.one_line()


@pytest.mark.parametrize(
    "doc",
    [
        {"aws": {"profile": "AKIAABCDEFGHIJKLMNOP"}},
        {"git": {"remote_url": "https://x-token-auth:s3cr3t@bitbucket.org/t/r.git"}},
        {"aws": {"endpoint_url": "http://user:s3cr3t@127.0.0.1:9000"}},
        {"store": {"url": "-----BEGIN OPENSSH PRIVATE KEY-----abc"}},
        {"notify": {"webhook_url": "https://u:s3cr3t@hooks.example.com/x"}},
    ],
)
def test_credential_values_are_refused(tmp_path: Path, doc: dict[str, Any]) -> None:
    err = load_error(tmp_path, doc)
    assert "refusing to store it" in str(err)
    assert "s3cr3t" not in err.one_line()
    assert "AKIAABCDEFGHIJKLMNOP" not in err.one_line()


def test_replace_refuses_secrets_too() -> None:
    with pytest.raises(ConfigError, match="looks like a credential"):
        CPVConfig().replace(aws={"secret_access_key": "x"})


def test_git_remote_user_without_password_is_fine() -> None:
    cfg = CPVConfig().replace(git={"remote_url": "https://someone@bitbucket.org/t/r.git"})
    assert cfg.git.remote_url == "https://someone@bitbucket.org/t/r.git"


# ---------------------------------------------------------------------------- save


def test_save_is_0600_in_0700_dir_and_round_trips(tmp_path: Path, home: Path) -> None:
    cfg = CPVConfig().replace(
        aws={"profile": "ml", "bucket": "vmo-model-checkpoints", "prefix": "AI-Convo"},
        git={"remote_url": "git@bitbucket.org:team/repo.git"},
        transfer={"workers": 16},
        team="AI-Convo",
        model="faster-whisper",
    )
    target = home / ".cpv" / "config.json"
    written = cfg.save(target)
    assert written == target
    assert mode(target) == 0o600
    assert mode(target.parent) == 0o700
    doc = json.loads(target.read_text(encoding="utf-8"))
    # Only what differs from the defaults is written.
    assert doc == {
        "aws": {"bucket": "vmo-model-checkpoints", "prefix": "AI-Convo", "profile": "ml"},
        "git": {"remote_url": "git@bitbucket.org:team/repo.git"},
        "model": "faster-whisper",
        "team": "AI-Convo",
        "transfer": {"workers": 16},
    }
    assert CPVConfig.load(target, env={"HOME": str(home)}) == cfg
    assert not [p for p in target.parent.iterdir() if p.name != "config.json"]  # no temp left


def test_save_tightens_existing_cpv_dir_and_replaces_file(tmp_path: Path) -> None:
    cpv_dir = tmp_path / ".cpv"
    cpv_dir.mkdir(mode=0o755)
    cpv_dir.chmod(0o755)
    target = cpv_dir / "config.json"
    target.write_text("{}", encoding="utf-8")
    target.chmod(0o644)
    CPVConfig(team="AI-A").save(target)
    assert mode(cpv_dir) == 0o700
    assert mode(target) == 0o600
    assert json.loads(target.read_text(encoding="utf-8")) == {"team": "AI-A"}


def test_save_writes_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "cpv.json"
    write_json(real, {})
    link_dir = tmp_path / ".cpv"
    link_dir.mkdir()
    link = link_dir / "config.json"
    link.symlink_to(real)
    CPVConfig(model="m1").save(link)
    assert link.is_symlink()
    assert json.loads(real.read_text(encoding="utf-8")) == {"model": "m1"}


def test_save_failure_is_config_error_and_leaves_nothing(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file-not-dir"
        blocker.write_text("x", encoding="utf-8")
        target = blocker / "config.json"  # parent is a file: fails even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "config.json"
    with pytest.raises(ConfigError, match="cannot"):
        CPVConfig().save(target)
    assert not target.exists()


def test_saved_file_never_contains_credentials(tmp_path: Path, home: Path) -> None:
    aws = home / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        "[ml]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        encoding="utf-8",
    )
    base = CPVConfig.load(tmp_path / "none.json", env={"HOME": str(home)})
    cfg = base.setup_aws_profile("ml", bucket="bucket-1", save_to=tmp_path / "out.json")
    cfg.save(tmp_path / "full.json")
    for name in ("out.json", "full.json"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert "AKIAIOSFODNN7EXAMPLE" not in text
        assert "wJalrXUtnFEMI" not in text
        assert '"profile": "ml"' in text
    shown = json.dumps(cfg.get_config())
    assert "AKIA" not in shown
    assert "wJalr" not in shown


def test_update_config_file_merges_only_that_file(tmp_path: Path, env: dict[str, str]) -> None:
    path = write_json(tmp_path / "c.json", {"aws": {"profile": "p", "bucket": "b-1"}})
    cfg = update_config_file(path, {"aws": {"region": "eu-west-1"}, "team": "AI-X"})
    assert cfg.aws.profile == "p"
    assert cfg.aws.region == "eu-west-1"
    assert cfg.team == "AI-X"
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "aws": {"bucket": "b-1", "profile": "p", "region": "eu-west-1"},
        "team": "AI-X",
    }
    with pytest.raises(ConfigError, match=r"aws\.bucket"):
        update_config_file(path, {"aws": {"bucket": "BAD"}})
    assert json.loads(path.read_text(encoding="utf-8"))["aws"]["bucket"] == "b-1"  # untouched


# ---------------------------------------------------------------------------- replace & views


def test_replace_merges_dicts_and_replaces_sections() -> None:
    cfg = CPVConfig().replace(aws={"profile": "p", "bucket": "b-1"})
    merged = cfg.replace(aws={"region": "eu-west-1"})
    assert (merged.aws.profile, merged.aws.bucket, merged.aws.region) == ("p", "b-1", "eu-west-1")
    whole = cfg.replace(aws=AwsSection(profile="q"))
    assert whole.aws == AwsSection(profile="q")
    with pytest.raises(ConfigError, match="unknown setting awz"):
        cfg.replace(awz={})
    with pytest.raises(ConfigError, match="in arguments"):
        cfg.replace(transfer={"workers": -1})


def test_subclass_is_preserved() -> None:
    class Facade(CPVConfig):
        def hello(self) -> str:
            return "hi"

    cfg = Facade.from_dict({"team": "AI-X"}).replace(model="m").with_overrides({"git.branch": "b"})
    assert isinstance(cfg, Facade)
    assert cfg.hello() == "hi"


def test_get_config_is_redacted_and_resolved(tmp_path: Path, home: Path) -> None:
    secret_path = "/services/T000/B000/XXXXXXXXXXXXXXXX"
    cfg = CPVConfig.load(tmp_path / "none.json", env={"HOME": str(home)}).replace(
        notify={"webhook_url": f"https://hooks.slack.com{secret_path}"}
    )
    view = cfg.get_config()
    assert view["notify"]["webhook_url"] == "https://hooks.slack.com/…"
    assert secret_path not in json.dumps(view)
    assert view["cache"]["dir"] == str(home / ".cache" / "cpv")
    assert view["transfer"]["workers"] == 8
    assert view["sources"] == ["arguments"]
    json.dumps(view)  # plain JSON types only


def test_redact_url() -> None:
    assert redact_url("https://hooks.slack.com/services/T/B/x") == "https://hooks.slack.com/…"
    assert redact_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert redact_url("not a url") == "<redacted>"


def test_git_ssh_command_quotes_key(tmp_path: Path) -> None:
    assert CPVConfig().git_ssh_command is None
    cfg = CPVConfig.load(tmp_path / "none.json", env={"HOME": "/h"}).replace(
        git={"ssh_key_path": "~/my keys/id"}
    )
    assert cfg.ssh_key_file == Path("/h/my keys/id")
    assert cfg.git_ssh_command == "ssh -i '/h/my keys/id' -o IdentitiesOnly=yes"


# ---------------------------------------------------------------------------- store location


def test_store_location_rules(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    # Default for a new workspace: a local folder store inside it.
    default = CPVConfig().store_location(workspace=ws)
    assert default == StoreLocation(kind="file", path=ws / ".cpv" / "store")
    assert CPVConfig().store_url(workspace=ws) == (ws / ".cpv" / "store").as_uri()
    with pytest.raises(ConfigError, match="no store configured"):
        CPVConfig().store_location()
    # Derived from aws.bucket/prefix.
    aws = CPVConfig().replace(aws={"bucket": "vmo-model-checkpoints", "prefix": "/AI-Convo/"})
    assert aws.store_url() == "s3://vmo-model-checkpoints/AI-Convo"
    assert CPVConfig().replace(aws={"bucket": "b-1"}).store_url() == "s3://b-1"
    # store.url wins over aws.bucket.
    both = aws.replace(store={"url": "s3://other-bucket/x/y/"})
    assert both.store_location() == StoreLocation(kind="s3", bucket="other-bucket", prefix="x/y")
    assert both.store_url() == "s3://other-bucket/x/y"
    # file:// and plain paths.
    url = CPVConfig().replace(store={"url": "file:///srv/cpv%20store"})
    assert url.store_location() == StoreLocation(kind="file", path=Path("/srv/cpv store"))
    rel = CPVConfig().replace(store={"url": "shared/store"})
    assert rel.store_location(workspace=ws).path == ws / "shared" / "store"
    with pytest.raises(ConfigError, match="relative"):
        rel.store_location()
    home = CPVConfig.load(tmp_path / "none.json", env={"HOME": "/h"})
    assert home.replace(store={"url": "~/stores/a"}).store_location().path == Path("/h/stores/a")


# ---------------------------------------------------------------------------- AWS profile


@pytest.fixture
def aws_home(home: Path) -> Path:
    aws = home / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n\n[ml-team]\n"
        "aws_access_key_id = x\naws_secret_access_key = y\n",
        encoding="utf-8",
    )
    (aws / "config").write_text("[profile sso-dev]\nregion = eu-west-1\n", encoding="utf-8")
    return home


def test_setup_aws_profile_records_only_the_name(tmp_path: Path, aws_home: Path) -> None:
    base = CPVConfig.load(tmp_path / "none.json", env={"HOME": str(aws_home)})
    cfg = base.setup_aws_profile(
        "ml-team",
        region="eu-west-1",
        bucket="vmo-model-checkpoints",
        prefix="AI-Convo",
        endpoint_url="http://127.0.0.1:8333",
    )
    assert cfg.aws == AwsSection(
        profile="ml-team",
        region="eu-west-1",
        bucket="vmo-model-checkpoints",
        prefix="AI-Convo",
        endpoint_url="http://127.0.0.1:8333",
    )
    assert base.aws.profile is None  # frozen: a new object is returned
    # Profiles in ~/.aws/config ([profile NAME]) and the seed's default call work too.
    assert base.setup_aws_profile("sso-dev").aws.profile == "sso-dev"
    assert base.setup_aws_profile().aws.profile == "default"


def test_setup_aws_profile_missing_profile(tmp_path: Path, aws_home: Path) -> None:
    base = CPVConfig.load(tmp_path / "none.json", env={"HOME": str(aws_home)})
    with pytest.raises(ConfigError, match="'nobody' not found") as info:
        base.setup_aws_profile("nobody")
    assert info.value.hint == "run: aws configure --profile nobody"


def test_setup_aws_profile_honours_aws_env_files(tmp_path: Path, home: Path) -> None:
    creds = tmp_path / "elsewhere" / "creds"
    creds.parent.mkdir()
    creds.write_text("[ci]\naws_access_key_id = x\n", encoding="utf-8")
    base = CPVConfig.load(
        tmp_path / "none.json",
        env={"HOME": str(home), "AWS_SHARED_CREDENTIALS_FILE": str(creds)},
    )
    assert base.setup_aws_profile("ci").aws.profile == "ci"


def test_setup_aws_profile_with_credential_path(tmp_path: Path, aws_home: Path) -> None:
    base = CPVConfig.load(tmp_path / "none.json", env={"HOME": str(aws_home)})
    creds = "~/.aws/credentials"  # the seed's call: expanded against the loaded HOME
    assert base.setup_aws_profile("ml-team", credential_path=creds).aws.profile == "ml-team"
    with pytest.raises(ConfigError, match="not found in"):
        base.setup_aws_profile("sso-dev", credential_path=creds)  # only that file is searched
    with pytest.raises(ConfigError, match="credential file not found"):
        base.setup_aws_profile("ml-team", credential_path=tmp_path / "nope")


def test_setup_aws_profile_save_to_keeps_other_settings(tmp_path: Path, aws_home: Path) -> None:
    user = write_json(tmp_path / "user.json", {"team": "AI-Convo", "aws": {"region": "x-1"}})
    base = CPVConfig.load(user, env={"HOME": str(aws_home), "CPV_WORKERS": "3"})
    base.setup_aws_profile("ml-team", bucket="bucket-1", save_to=user)
    saved = json.loads(user.read_text(encoding="utf-8"))
    # The aws section is exactly the call's; other settings stay; env overrides do not leak.
    assert saved == {"aws": {"bucket": "bucket-1", "profile": "ml-team"}, "team": "AI-Convo"}
    assert mode(user) == 0o600


def test_setup_aws_profile_invalid_values(tmp_path: Path, aws_home: Path) -> None:
    base = CPVConfig.load(tmp_path / "none.json", env={"HOME": str(aws_home)})
    with pytest.raises(ConfigError, match=r"aws\.bucket"):
        base.setup_aws_profile("ml-team", bucket="Bad_Bucket")


# ---------------------------------------------------------------------------- SSH setup


@pytest.fixture
def ssh_keygen() -> str:
    # Fail, not skip: SSH setup is a supported feature and must be tested here.
    assert SSH_KEYGEN, "ssh-keygen not found: apt-get install openssh-client"
    return SSH_KEYGEN


def ssh_resolve(config: Path, alias: str) -> dict[str, str]:
    """What the real ssh client makes of the config for ``alias``."""
    assert SSH, "ssh not found: apt-get install openssh-client"
    out = subprocess.run(
        [SSH, "-G", "-F", str(config), alias],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    resolved: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        resolved.setdefault(key, value)
    return resolved


def test_setup_bitbucket_ssh_generates_key_and_host_block(tmp_path: Path, ssh_keygen: str) -> None:
    ssh_dir = tmp_path / "ssh"
    base = CPVConfig.load(tmp_path / "none.json", env={"HOME": str(tmp_path / "home")})
    setup = base.setup_bitbucket_ssh(
        remote_url="git@bitbucket.org:ai-convo/faster-whisper.git", ssh_dir=ssh_dir
    )
    key = ssh_dir / "id_rsa_bitbucket"
    assert setup.key_path == key
    assert setup.key_created
    assert setup.ssh_config_changed
    assert setup.host_alias == "bitbucket-cpv"
    assert setup.remote_url == "git@bitbucket-cpv:ai-convo/faster-whisper.git"
    assert setup.public_key.startswith("ssh-ed25519 ")
    assert "PRIVATE" not in setup.public_key
    assert (ssh_dir / "id_rsa_bitbucket.pub").read_text(encoding="utf-8").strip() == (
        setup.public_key
    )
    assert "OPENSSH PRIVATE KEY" in key.read_text(encoding="utf-8")
    assert mode(ssh_dir) == 0o700
    for name in ("id_rsa_bitbucket", "id_rsa_bitbucket.pub", "config"):
        assert mode(ssh_dir / name) == 0o600, name
    assert sorted(p.name for p in ssh_dir.iterdir()) == [
        "config",
        "id_rsa_bitbucket",
        "id_rsa_bitbucket.pub",
    ]  # no temp folder left behind
    # The config object records the alias and the key *path*, never the key.
    assert setup.config.git.remote_url == setup.remote_url
    assert setup.config.git.ssh_host_alias == "bitbucket-cpv"
    assert setup.config.git.ssh_key_path == str(key)
    assert "PRIVATE" not in json.dumps(setup.config.get_config())
    # The real ssh client resolves the alias to Bitbucket with only this key.
    resolved = ssh_resolve(ssh_dir / "config", "bitbucket-cpv")
    assert resolved["hostname"] == "bitbucket.org"
    assert resolved["user"] == "git"
    assert resolved["identitiesonly"] == "yes"
    assert resolved["identityfile"] == str(key)


def test_setup_bitbucket_ssh_is_idempotent(tmp_path: Path, ssh_keygen: str) -> None:
    ssh_dir = tmp_path / "ssh"
    ssh_dir.mkdir(mode=0o700)
    user_config = "Host github.com\n    User git\n\nHost *\n    ServerAliveInterval 60\n"
    (ssh_dir / "config").write_text(user_config, encoding="utf-8")
    base = CPVConfig().replace(git={"remote_url": "git@bitbucket.org:team/repo.git"})
    first = base.setup_bitbucket_ssh(ssh_dir=ssh_dir)
    after_first = (ssh_dir / "config").read_text(encoding="utf-8")
    key_bytes = (ssh_dir / "id_rsa_bitbucket").read_bytes()
    # Second run on the rewritten config (remote now uses the alias): nothing changes.
    second = first.config.setup_bitbucket_ssh(ssh_dir=ssh_dir)
    assert not second.key_created
    assert not second.ssh_config_changed
    assert second.public_key == first.public_key
    assert second.remote_url == first.remote_url
    assert (ssh_dir / "config").read_text(encoding="utf-8") == after_first
    assert (ssh_dir / "id_rsa_bitbucket").read_bytes() == key_bytes
    # Third run from the original config: still one block, user's entries untouched.
    base.setup_bitbucket_ssh(ssh_dir=ssh_dir)
    text = (ssh_dir / "config").read_text(encoding="utf-8")
    assert text.count("Host bitbucket-cpv") == 1
    assert text.startswith(user_config)


def test_setup_bitbucket_ssh_refreshes_block_in_place(tmp_path: Path, ssh_keygen: str) -> None:
    ssh_dir = tmp_path / "ssh"
    base = CPVConfig()
    base.setup_bitbucket_ssh(remote_url="git@bitbucket.org:t/r.git", ssh_dir=ssh_dir)
    config = ssh_dir / "config"
    config.write_text(
        config.read_text(encoding="utf-8") + "\nHost after\n    User me\n", encoding="utf-8"
    )
    setup = base.setup_bitbucket_ssh(
        remote_url="ssh://git@bitbucket.org:7999/t/r.git", ssh_dir=ssh_dir
    )
    assert setup.ssh_config_changed
    assert not setup.key_created
    assert setup.remote_url == "ssh://git@bitbucket-cpv/t/r.git"
    text = config.read_text(encoding="utf-8")
    assert text.count("Host bitbucket-cpv") == 1
    assert text.rstrip().endswith("Host after\n    User me")
    assert ssh_resolve(config, "bitbucket-cpv")["port"] == "7999"


def test_setup_bitbucket_ssh_uses_existing_key(tmp_path: Path, ssh_keygen: str) -> None:
    ssh_dir = tmp_path / "ssh"
    ssh_dir.mkdir()
    key = ssh_dir / "team_key"
    subprocess.run(
        [ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", "mine", "-f", str(key)], check=True
    )
    original = key.read_bytes()
    (ssh_dir / "team_key.pub").unlink()  # the public half is derived again if missing
    setup = CPVConfig().setup_bitbucket_ssh(
        remote_url="git@bitbucket.org:t/r.git",
        ssh_dir=ssh_dir,
        keygen_filename="team_key",
        host_alias="bb",
        generate=False,
    )
    assert not setup.key_created
    assert key.read_bytes() == original
    assert setup.public_key.startswith("ssh-ed25519 ")
    assert (ssh_dir / "team_key.pub").read_text(encoding="utf-8").strip() == setup.public_key
    assert setup.remote_url == "git@bb:t/r.git"


def test_setup_bitbucket_ssh_https_remote_becomes_ssh(tmp_path: Path, ssh_keygen: str) -> None:
    setup = CPVConfig().setup_bitbucket_ssh(
        remote_url="https://someone@bitbucket.org/team/repo.git", ssh_dir=tmp_path / "ssh"
    )
    assert setup.remote_url == "git@bitbucket-cpv:team/repo.git"


def test_setup_bitbucket_ssh_save_to(tmp_path: Path, ssh_keygen: str) -> None:
    user = write_json(tmp_path / "user.json", {"team": "AI-Convo"})
    setup = CPVConfig().setup_bitbucket_ssh(
        remote_url="git@bitbucket.org:t/r.git", ssh_dir=tmp_path / "ssh", save_to=user
    )
    assert json.loads(user.read_text(encoding="utf-8")) == {
        "git": {
            "remote_url": "git@bitbucket-cpv:t/r.git",
            "ssh_host_alias": "bitbucket-cpv",
            "ssh_key_path": str(setup.key_path),
        },
        "team": "AI-Convo",
    }
    assert CPVConfig.load(user, env={}).git == setup.config.git


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"remote_url": "git@github.com:x/y.git"}, "not 'bitbucket.org'"),
        ({"remote_url": "file:///srv/git/r.git"}, "SSH setup does not apply"),
        ({"remote_url": "not-a-remote"}, "not an SSH URL"),
        ({"remote_url": "git@bitbucket.org:/"}, "names no repository"),
        ({}, "no Git remote URL"),
        ({"remote_url": "git@bitbucket.org:t/r.git", "keygen_filename": "../k"}, "plain file"),
        ({"remote_url": "git@bitbucket.org:t/r.git", "keygen_filename": "k.pub"}, "plain file"),
        ({"remote_url": "git@bitbucket.org:t/r.git", "host_alias": "a b"}, "host alias"),
        ({"remote_url": "git@bitbucket.org:t/r.git", "generate": False}, "does not exist"),
    ],
)
def test_setup_bitbucket_ssh_errors_leave_nothing(
    tmp_path: Path, kwargs: dict[str, Any], fragment: str
) -> None:
    ssh_dir = tmp_path / "ssh"
    with pytest.raises(ConfigError, match=fragment):
        CPVConfig().setup_bitbucket_ssh(ssh_dir=ssh_dir, **kwargs)
    assert not ssh_dir.exists() or not any(ssh_dir.iterdir())


def test_setup_bitbucket_ssh_refuses_unmanaged_alias(tmp_path: Path, ssh_keygen: str) -> None:
    ssh_dir = tmp_path / "ssh"
    ssh_dir.mkdir()
    (ssh_dir / "config").write_text("Host bitbucket-cpv\n    User me\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="already has its own 'Host bitbucket-cpv'"):
        CPVConfig().setup_bitbucket_ssh(remote_url="git@bitbucket.org:t/r.git", ssh_dir=ssh_dir)
    assert (ssh_dir / "config").read_text(encoding="utf-8") == "Host bitbucket-cpv\n    User me\n"


def test_setup_bitbucket_ssh_without_ssh_keygen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ConfigError, match="ssh-keygen is not installed") as info:
        CPVConfig().setup_bitbucket_ssh(
            remote_url="git@bitbucket.org:t/r.git", ssh_dir=tmp_path / "ssh"
        )
    assert "openssh-client" in info.value.hint
    assert not (tmp_path / "ssh" / "id_rsa_bitbucket").exists()


def test_every_valid_transfer_setting_is_a_valid_engine_limit() -> None:
    """The bounds are declared once (the engine's): a value the config accepts never ends in
    the engine's ValueError, and one it refuses is a ConfigError with a hint."""
    from cpv.engine.transfer import PART_SIZE_RANGE, WORKERS_RANGE, TransferLimits

    for part in PART_SIZE_RANGE:
        for workers in WORKERS_RANGE:
            cfg = CPVConfig.from_dict({"transfer": {"part_size": part, "workers": workers,
                                                    "max_inflight_bytes": 64 * 1024**3}})
            TransferLimits(workers=cfg.transfer.effective_workers, part_size=part)
    with pytest.raises(ConfigError) as raised:
        CPVConfig.from_dict({"transfer": {"part_size": PART_SIZE_RANGE[1] + 1}})
    assert raised.value.hint


def test_max_inflight_bytes_caps_the_workers_a_transfer_uses() -> None:
    mib = 1024 * 1024
    cfg = CPVConfig.from_dict({"transfer": {"workers": 16, "part_size": 16 * mib,
                                            "max_inflight_bytes": 128 * mib}})
    assert cfg.transfer.effective_workers == 6  # (6 + 2) x 16 MiB = 128 MiB
    assert CPVConfig.from_dict({}).transfer.effective_workers == 8  # the default fits
