"""cpv.secrets recognises the secrets people really paste, and cpv.config keeps them out of Git."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cpv.config import CPVConfig, set_setting, unset_setting, workspace_config_path
from cpv.errors import ConfigError
from cpv.secrets import find_secret, is_webhook_url, redact, redact_url, url_credential

WEBHOOKS = [
    "https://hooks.slack.com/services/T0AAA1111/B0BBB2222/abcdefSECRET",
    "https://hooks.slack.com/triggers/T0AAA/123/abcdefSECRET",
    "https://contoso.webhook.office.com/webhookb2/abc@def/IncomingWebhook/abcdefSECRET/ghi",
    "https://outlook.office.com/webhook/abc/IncomingWebhook/abcdefSECRET/ghi",
    "https://prod-01.westeurope.logic.azure.com:443/workflows/abcdefSECRET/triggers/manual/"
    "paths/invoke?api-version=2016-06-01&sig=xyz",
    "https://discord.com/api/webhooks/123456/abcdefSECRET",
    "https://example.test/hook?token=abcdefSECRET",
]

CREDENTIAL_URLS = [
    ("https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/t/m.git", "GitHub"),
    ("https://github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz0123@github.com/t/m.git", "GitHub"),
    ("https://gho_abcdefghijklmnopqrstuvwxyz0123456789@github.com/t/m.git", "GitHub"),
    ("https://glpat-abcdefghij0123456789@gitlab.com/t/m.git", "GitLab"),
    ("https://oauth2:glpat-abcdefghij0123456789@gitlab.com/t/m.git", "GitLab"),
    ("https://x-token-auth:ATBBabcdefghijklmnopqrstuvwxyz012345@bitbucket.org/t/m.git",
     "Bitbucket"),
    ("https://alice:hunter2@git.example.test/t/m.git", "password"),
    ("https://0123456789abcdef0123456789abcdef01234567@git.example.test/t/m.git", "token"),
]

PLAIN = [
    "git@github.com:team/model.git",
    "ssh://git@bitbucket.org:22/team/model.git",
    "https://alice@git.example.test/team/model.git",
    "https://github.com/team/model.git",
    "s3://bucket/AI-Convo",
    "http://127.0.0.1:8333",
    "faster-whisper",
]


@pytest.mark.parametrize("url", WEBHOOKS)
def test_webhook_urls_are_secrets_and_redacted_to_their_host(url: str) -> None:
    assert is_webhook_url(url)
    assert find_secret(url) == "a webhook URL"
    for shown in (redact_url(url), redact(f"POST {url} failed")):
        assert "abcdefSECRET" not in shown and "://" in shown


@pytest.mark.parametrize(("url", "kind"), CREDENTIAL_URLS)
def test_credentials_in_urls_are_found_and_redacted(url: str, kind: str) -> None:
    assert kind in (find_secret(url) or "")
    assert url_credential(url) is not None
    secret = url.split("//", 1)[1].split("@", 1)[0].split(":")[-1]
    shown = redact(f"fatal: repository '{url}' not found")
    assert secret not in shown
    assert shown.endswith("/t/m.git' not found")  # the host and path stay readable


@pytest.mark.parametrize("value", PLAIN)
def test_ordinary_values_are_not_secrets(value: str) -> None:
    assert find_secret(value) is None
    assert url_credential(value) is None
    assert redact(value) == value


def test_a_bare_token_in_text_is_redacted() -> None:
    text = "remote: invalid token glpat-abcdefghij0123456789 for ghp_abcdefghijklmnopqrstuvwxyz0"
    assert redact(text) == "remote: invalid token *** for ***"


@pytest.mark.parametrize("url", [url for url, _ in CREDENTIAL_URLS])
def test_config_refuses_a_token_remote_without_repeating_it(url: str) -> None:
    secret = url.split("//", 1)[1].split("@", 1)[0].split(":")[-1]
    with pytest.raises(ConfigError) as info:
        CPVConfig.from_dict({"git": {"remote_url": url}})
    assert secret not in str(info.value) and secret not in info.value.hint
    assert "SSH remote" in info.value.hint


def test_a_webhook_is_a_notify_setting_and_nothing_else() -> None:
    url = WEBHOOKS[0]
    assert CPVConfig.from_dict({"notify": {"webhook_url": url}}).notify.webhook_url == url
    with pytest.raises(ConfigError, match="webhook URL"):
        CPVConfig.from_dict({"aws": {"endpoint_url": url}})
    with pytest.raises(ConfigError, match="password"):
        CPVConfig.from_dict({"notify": {"webhook_url": "https://u:pw@hooks.example.test/x"}})


def test_a_webhook_set_for_a_workspace_goes_to_the_private_file(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home")}
    ws = tmp_path / "ws"
    done = set_setting("notify.webhook_url", WEBHOOKS[0], workspace=ws, env=env)
    private = tmp_path / "home" / ".cpv" / "config.json"
    assert (done.path, done.scope, done.moved) == (private, "user", True)
    assert done.shown == "https://hooks.slack.com/…"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert not workspace_config_path(ws).exists()
    assert CPVConfig.load(workspace=ws, env=env).notify.webhook_url == WEBHOOKS[0]
    # An ordinary setting still goes to the workspace.
    other = set_setting("transfer.workers", "4", workspace=ws, env=env)
    assert (other.path, other.scope, other.moved) == (workspace_config_path(ws), "workspace",
                                                      False)
    gone = unset_setting("notify.webhook_url", workspace=ws, env=env)
    assert gone.changed and gone.path == private
    assert CPVConfig.load(workspace=ws, env=env).notify.webhook_url is None


def test_loading_a_workspace_file_with_a_webhook_refuses_and_names_the_fix(
    tmp_path: Path,
) -> None:
    env = {"HOME": str(tmp_path / "home")}
    ws = tmp_path / "ws"
    shared = workspace_config_path(ws)
    shared.parent.mkdir(parents=True)
    shared.write_text(json.dumps({"notify": {"webhook_url": WEBHOOKS[0]}, "model": "m"}))
    with pytest.raises(ConfigError) as info:
        CPVConfig.load(workspace=ws, env=env)
    assert str(shared) in str(info.value) and "\n" not in str(info.value)
    assert "abcdefSECRET" not in str(info.value) + info.value.hint
    assert "cpv config unset notify.webhook_url" in info.value.hint
    assert "CPV_NOTIFY_WEBHOOK" in info.value.hint
    # The environment variable is a fine place for it.
    loaded = CPVConfig.load(workspace=tmp_path / "other", env={**env,
                            "CPV_NOTIFY_WEBHOOK": WEBHOOKS[0]})
    assert loaded.get_config()["notify"]["webhook_url"] == "https://hooks.slack.com/…"
    # The fix: unset from inside the workspace removes the committed copy.
    fixed = unset_setting("notify.webhook_url", workspace=ws, env=env)
    assert fixed.changed and fixed.path == shared
    assert json.loads(shared.read_text()) == {"model": "m"}
    assert CPVConfig.load(workspace=ws, env=env).model == "m"
