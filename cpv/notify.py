"""Announce cpv events (a new version, a push) to a Slack or Teams incoming webhook.

The body is ``{"text": <one-line summary>, "cpv": <the event>}``: Slack and Teams show
``text`` and ignore the rest; other receivers (a CI hook, a small service) get the structured
event under ``cpv``. Plain :mod:`urllib.request`, so no dependency is added for an optional
feature.

The webhook URL is itself a secret (its path is the token), so it never appears in messages:
errors name it as ``scheme://host/…`` (:func:`cpv.secrets.redact_url`). Whether a failed
notification fails the operation is the caller's choice; the api layer logs it and carries on,
since the version was already recorded.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
from collections.abc import Mapping
from urllib.parse import urlsplit

from cpv._version import __version__
from cpv.errors import CPVError
from cpv.secrets import redact_url

logger = logging.getLogger(__name__)

_SUMMARY_MAX = 300
_BODY_SNIPPET = 200


class NotifyError(CPVError):
    """A webhook could not be reached or refused the event."""

    default_hint = "check notify.webhook_url (or CPV_NOTIFY_WEBHOOK) and network access to it"


def summarize_event(event: Mapping[str, object]) -> str:
    """One line for humans: ``event["summary"]`` if given, else ``cpv <event>: k=v, …``.

    Only scalar values are listed (nested metrics and file lists stay in the ``cpv`` part).
    """
    summary = event.get("summary")
    if isinstance(summary, str) and summary.strip():
        text = summary
    else:
        kind = event.get("event", "event")
        fields = ", ".join(
            f"{key}={value}"
            for key, value in event.items()
            if key not in ("event", "summary") and isinstance(value, (str, int, float, bool))
        )
        text = f"cpv {kind}: {fields}" if fields else f"cpv {kind}"
    one_line = " ".join(text.split())
    if len(one_line) > _SUMMARY_MAX:
        one_line = one_line[: _SUMMARY_MAX - 1] + "…"
    return one_line


def post_event(webhook_url: str, event: Mapping[str, object], *, timeout_s: float = 5.0) -> None:
    """POST ``{"text": summary, "cpv": event}`` as JSON to ``webhook_url``.

    Values JSON cannot hold are sent as strings (paths, datetimes), and NaN/inf metrics as
    ``"nan"``/``"inf"`` so the body stays valid JSON. Loopback URLs never go through a proxy.

    Args:
        webhook_url: an http(s) incoming-webhook URL.
        event: the event; ``event["event"]`` names its kind (``"tag"``, ``"push"``...).
        timeout_s: connect and read timeout.

    Raises:
        NotifyError: the URL is not http(s), the host cannot be reached or times out, or the
            receiver answers with a non-2xx status.
    """
    import urllib.error  # here, not at the top: most commands notify nobody
    import urllib.request

    where = redact_url(webhook_url)
    try:
        parts = urlsplit(webhook_url)
    except ValueError as exc:
        raise NotifyError(f"webhook URL {where} is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyError(f"webhook URL {where} is not an http(s) URL")
    body = json.dumps(
        {"text": summarize_event(event), "cpv": _jsonable(dict(event))},
        sort_keys=True,
        allow_nan=False,
    ).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above: http(s) only
        webhook_url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": _user_agent()},
    )
    handlers: list[urllib.request.BaseHandler] = []
    if _is_loopback(parts.hostname):
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout_s) as response:
            response.read(64 * 1024)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        snippet = " ".join(exc.read(_BODY_SNIPPET).decode("utf-8", "replace").split())
        exc.close()
        raise NotifyError(
            f"webhook {where} answered HTTP {exc.code}" + (f": {snippet}" if snippet else "")
        ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise NotifyError(f"webhook {where} unreachable: {reason}") from exc
    if not 200 <= status < 300:  # 1xx/3xx that urllib did not resolve
        raise NotifyError(f"webhook {where} answered HTTP {status}")
    logger.debug("posted %s event to %s", event.get("event", "event"), where)


def _jsonable(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _user_agent() -> str:
    return f"cpv/{__version__}"


__all__ = ["NotifyError", "post_event", "summarize_event"]
