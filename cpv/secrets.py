"""The one answer to "is this a secret?", and how to show a URL or a message without one.

Why one module: the configuration (which must never store a secret), the Git adapter (which must
never write a token into ``.git/config`` nor print one in an error) and the notifier (which must
name a webhook without revealing it) used to carry their own, slightly different patterns, so a
token shape known to one was missed by another. Everything here is pure string work with no cpv
imports, so any layer may use it.

What counts as a secret:

* well-known token shapes wherever they appear: GitHub (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``,
  ``ghr_``, ``github_pat_``), GitLab (``glpat-`` & co.), Bitbucket/Atlassian (``ATBB``,
  ``ATATT``, ``ATCTT``), Slack (``xox?-``), AWS access key ids, PEM private keys;
* a URL whose user-info holds a password (``https://user:pw@host``) or whose user name is itself
  token-shaped (``https://github_pat_…@host``, or a long random-looking string);
* a webhook URL (Slack ``hooks.slack.com``, Teams/Office ``webhook.office.com``, Power
  Automate ``logic.azure.com`` workflows, Discord ``/api/webhooks/``): the path is the token.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import SplitResult, parse_qsl, urlsplit

#: Token shapes recognised anywhere in a string, each with what to call it in a message.
TOKEN_PATTERNS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("an AWS access key id", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")),
    ("a private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")),
    ("a Slack token", re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{10,}")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}")),
    ("a GitHub token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}")),
    ("a GitLab token",
     re.compile(r"\bgl(?:pat|dt|ptt|rt|cbt|soat|ft|imt|oas|agent)-[A-Za-z0-9_-]{16,}")),
    ("a Bitbucket token", re.compile(r"\bAT(?:BB|ATT|CTT)[A-Za-z0-9_=-]{20,}")),
)

_URL_RE: Final = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# A user name this long that mixes letters and digits is a token, whatever its prefix.
_RANDOM_USER_RE: Final = re.compile(r"(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Za-z])"
                                    r"[A-Za-z0-9_-]{30,}")
_SECRET_QUERY_KEYS: Final = frozenset({
    "sig", "signature", "token", "access_token", "api_key", "apikey", "key", "secret",
    "x-amz-signature", "x-amz-credential", "x-amz-security-token",
})
REDACTED: Final = "***"


def find_token(text: str) -> str | None:
    """What kind of token ``text`` contains (``"a GitHub token"``), or None."""
    for what, pattern in TOKEN_PATTERNS:
        if pattern.search(text):
            return what
    return None


def url_credential(url: str) -> str | None:
    """What credential the user-info of ``url`` carries (``"a password"``), or None.

    A plain user name (``git@``, ``ssh://me@``, ``https://alice@``) is not a credential.
    """
    parts = _split(url)
    if parts is None:
        return None
    try:
        password = parts.password
        user = parts.username
    except ValueError:
        return None
    if password is not None:
        return "a password"
    if user:
        return find_token(user) or ("a token" if _RANDOM_USER_RE.fullmatch(user) else None)
    return None


def is_webhook_url(url: str) -> bool:
    """True if ``url`` is an incoming-webhook URL, whose path or query is its token."""
    parts = _split(url)
    if parts is None:
        return False
    try:
        host = (parts.hostname or "").lower()
    except ValueError:
        return False
    path = parts.path.lower()
    if host == "hooks.slack.com" or host.endswith(".webhook.office.com"):
        return True
    if host in ("outlook.office.com", "outlook.office365.com") and path.startswith("/webhook"):
        return True
    if host.endswith(".logic.azure.com") or host.endswith(".powerautomate.com"):
        return True
    if host in ("discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"):
        return path.startswith("/api/webhooks/")
    return _has_secret_query(parts.query)


def find_secret(value: str) -> str | None:
    """Why ``value`` must not be stored in a shared file or printed, or None if it may.

    Returns a phrase for a message: ``"a GitHub token"``, ``"a URL with a password"``,
    ``"a webhook URL"``. The value itself is never part of it.
    """
    token = find_token(value)
    if token:
        return token
    for match in _URL_RE.finditer(value):
        url = match.group(0)
        credential = url_credential(url)
        if credential:
            return f"a URL with {credential}"
        if is_webhook_url(url):
            return "a webhook URL"
    return None


def redact_url(url: str) -> str:
    """``scheme://host[:port]/…``: enough to recognise a URL, nothing of its user-info or path.

    For values whose path is the secret (webhooks), in displays, logs and errors.
    """
    parts = _split(url)
    if parts is None:
        return "<redacted>"
    try:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if not host:
        return "<redacted>"
    tail = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{tail}"


def redact(text: str) -> str:
    """``text`` with every secret replaced, for any message that may quote a URL or git's output.

    A URL keeps its scheme, host and (unless it is a webhook) its path, so the reader still sees
    which remote is meant; a password or token-shaped user name becomes ``***``; a webhook
    becomes ``scheme://host/…``; a bare token anywhere becomes ``***``.
    """
    text = _URL_RE.sub(lambda m: _redact_one_url(m.group(0)), text)
    for _, pattern in TOKEN_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def _redact_one_url(url: str) -> str:
    if is_webhook_url(url):
        return redact_url(url)
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    if colon:
        userinfo = f"{user}:{REDACTED}"
    elif find_token(user) or _RANDOM_USER_RE.fullmatch(user):
        userinfo = REDACTED
    return f"{scheme}{sep}{userinfo}@{hostport}{slash}{path}"


def _split(url: str) -> SplitResult | None:
    if not isinstance(url, str) or "://" not in url:
        return None
    try:
        return urlsplit(url.strip())
    except ValueError:
        return None


def _has_secret_query(query: str) -> bool:
    return any(key.lower() in _SECRET_QUERY_KEYS for key, _ in parse_qsl(query))


__all__ = [
    "REDACTED",
    "TOKEN_PATTERNS",
    "find_secret",
    "find_token",
    "is_webhook_url",
    "redact",
    "redact_url",
    "url_credential",
]
