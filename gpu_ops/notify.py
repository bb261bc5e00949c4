"""Webhook notifications of a platform instance: the `notify:` block, the payloads, and a delivery that retries with
backoff within a bounded time and never raises (a failed webhook must never fail a run).

The block lives in the instance's own file ($LEM_NOTIFY_CONFIG, else <storage>/notify.yaml), never in an experiment
file: experiment configs are copied into every result folder and the published dataset, and webhook URLs are
secrets (anyone holding a Slack hook URL can post to the channel). Logs show a URL only as masked_url() gives it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gpu_ops.errors import ConfigError, excerpt
from gpu_ops.strict_yaml import parse_yaml, read_config_bytes

Event = Literal["run_failure", "check_failure", "leaderboard_entry", "new_leader", "drift", "hf_publish"]
EVENTS: tuple[str, ...] = Event.__args__
MAX_FIELD_CHARS = 2000  # an error message or description in a payload is cut here (Slack caps a block at 3000)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Webhook(_Strict):
    """One receiver. `url` or `url_env` (the name of an environment variable holding it, so the file holds no secret);
    `format`: json (the event as an object) or slack (`text` + blocks); `events`: which to send (default: all)."""

    url: str | None = None
    url_env: str | None = None
    format: Literal["json", "slack"] = "json"
    events: list[Event] = list(EVENTS)

    @model_validator(mode="after")
    def _one_url(self) -> Webhook:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url: (the webhook URL) or url_env: (a variable holding it)")
        if self.url is not None:
            _check_url(self.url)
        return self

    def resolved_url(self, env: dict[str, str]) -> str | None:
        """The URL to post to (None: its url_env variable is not set here)."""
        return self.url if self.url is not None else env.get(self.url_env or "")


class Retries(_Strict):
    """Delivery of one payload: up to `attempts` tries, waiting backoff_s, 2x, 4x ... between them, all within total_s
    (requests included), so a dead receiver holds a sensor tick for at most total_s."""

    attempts: int = Field(4, ge=1, le=10)
    backoff_s: float = Field(1.0, ge=0, le=60)
    total_s: float = Field(30.0, gt=0, le=300)
    timeout_s: float = Field(5.0, gt=0, le=60)


class NotifyConfig(_Strict):
    webhooks: list[Webhook] = Field(default_factory=list, max_length=20)
    retries: Retries = Retries()


class NotifyFile(_Strict):
    notify: NotifyConfig = NotifyConfig()


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be an http(s) URL, got {masked_url(url)}")


def masked_url(url: str) -> str:
    """A URL as logs may show it: scheme and host only (the path and query of a webhook URL are its secret)."""
    parts = urllib.parse.urlsplit(str(url))
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or '?'}://{host}{port}/***"


def load_notify_config(path: Path) -> NotifyConfig:
    """The instance's `notify:` block from `path` (an empty block if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return NotifyConfig()
    data = parse_yaml(read_config_bytes(path), str(path)) or {}
    try:
        return NotifyFile.model_validate(data).notify
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key; valid keys: notify.webhooks[].{url, url_env, format, events}, notify.retries"
            elif err["type"] == "literal_error":
                msg = f"{msg} (got {excerpt(err.get('input'))})"
            lines.append(f"{path}: {where}: {msg}")
        raise ConfigError("\n".join(lines)) from None


def payload(fmt: str, event: str, title: str, fields: dict[str, object]) -> dict:
    """The body of one notification: the event as a JSON object, or Slack's `text` (the fallback line) with blocks."""
    fields = {
        k: (excerpt(v, bare=True) if isinstance(v, str) and len(v) > MAX_FIELD_CHARS else v) for k, v in fields.items()
    }
    if fmt == "json":
        return {"event": event, "title": title, **fields}
    lines = "\n".join(f"*{k}*: {v}" for k, v in fields.items() if v is not None)
    return {
        "text": f"[{event}] {title}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": lines[:MAX_FIELD_CHARS] or event}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"llm-energy-measure · {event}"}]},
        ],
    }


@dataclass
class Delivery:
    receiver: str  # the masked URL
    delivered: bool
    attempts: int
    error: str | None = None


def _retryable(exc: Exception) -> bool:
    """Server errors, rate limits and network errors are worth another try; other HTTP errors will not change."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    return True


def deliver(
    url: str,
    body: dict,
    retries: Retries,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Delivery:
    """POST `body` as JSON to `url`, retrying with exponential backoff within retries.total_s. Never raises."""
    data = json.dumps(body).encode()
    shown = masked_url(url)
    deadline = clock() + retries.total_s
    error = None
    for attempt in range(1, retries.attempts + 1):
        left = deadline - clock()
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=max(min(retries.timeout_s, left), 0.1)) as response:
                response.read(1 << 16)
            return Delivery(shown, True, attempt)
        except Exception as exc:  # noqa: BLE001 (whatever the receiver does, the caller carries on)
            code = f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else type(exc).__name__
            error = code  # never str(exc): urllib quotes the full URL in some messages
            if not _retryable(exc):
                return Delivery(shown, False, attempt, error)
        wait = retries.backoff_s * 2 ** (attempt - 1)
        if attempt == retries.attempts or clock() + wait >= deadline:
            return Delivery(shown, False, attempt, f"{error}; gave up within {retries.total_s:.0f} s")
        sleep(wait)
    return Delivery(shown, False, retries.attempts, error)


def notify(
    config: NotifyConfig,
    event: str,
    title: str,
    fields: dict[str, object],
    env: dict[str, str],
    sleep: Callable[[float], None] = time.sleep,
) -> list[Delivery]:
    """Send one event to every webhook subscribed to it; each result says whether it arrived (nothing raises)."""
    out = []
    for hook in config.webhooks:
        if event not in hook.events:
            continue
        url = hook.resolved_url(env)
        if url is None:
            out.append(Delivery(f"${hook.url_env}", False, 0, f"environment variable {hook.url_env} is not set"))
            continue
        try:
            _check_url(url)  # a URL from the environment is checked here: never file:// or the like
        except ValueError as exc:
            out.append(Delivery(f"${hook.url_env}", False, 0, str(exc)))
            continue
        out.append(deliver(url, payload(hook.format, event, title, fields), config.retries, sleep))
    return out
