"""Webhook delivery against a real loopback HTTP receiver: payloads, retries with backoff on 500, no crash when
nothing listens, URLs never shown whole, and the `notify:` file refused with the field named."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gpu_ops.errors import ConfigError
from gpu_ops.notify import NotifyConfig, Retries, Webhook, deliver, load_notify_config, masked_url, notify


class Receiver:
    """A webhook receiver on 127.0.0.1: answers each POST with the next status of `statuses` (then 200)."""

    def __init__(self, statuses=()):
        self.bodies, self.paths, self.statuses = [], [], list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.paths.append(self.path)
                receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path="/hooks/T000/secret-token?key=abc"):
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAST = Retries(attempts=4, backoff_s=0.5, total_s=30, timeout_s=2)


def test_json_and_slack_payloads_arrive_at_the_receiver():
    with Receiver() as rx:
        config = NotifyConfig(
            webhooks=[
                Webhook(url=rx.url("/json"), events=["run_failure"]),
                Webhook(url=rx.url("/slack"), format="slack"),
                Webhook(url=rx.url("/other"), events=["hf_publish"]),
            ]
        )
        sent = notify(config, "run_failure", "run 1234 of measure failed", {"error": "boom", "job": "measure"}, {})
    assert [d.delivered for d in sent] == [True, True]
    assert rx.paths == ["/json", "/slack"]  # the hf_publish-only receiver is not told
    assert rx.bodies[0] == {
        "event": "run_failure",
        "title": "run 1234 of measure failed",
        "error": "boom",
        "job": "measure",
    }
    slack = rx.bodies[1]
    assert slack["text"] == "[run_failure] run 1234 of measure failed"
    assert "*error*: boom" in slack["blocks"][1]["text"]["text"]


def test_a_failing_receiver_is_retried_with_exponential_backoff():
    waits = []
    with Receiver(statuses=[500, 503]) as rx:
        d = deliver(rx.url(), {"event": "x"}, FAST, sleep=waits.append)
    assert d.delivered and d.attempts == 3 and len(rx.bodies) == 3
    assert waits == [FAST.backoff_s, 2 * FAST.backoff_s]


def test_a_client_error_is_not_retried_and_nothing_listening_does_not_raise():
    with Receiver(statuses=[404]) as rx:
        d = deliver(rx.url(), {"event": "x"}, FAST, sleep=lambda s: None)
    assert not d.delivered and d.attempts == 1 and d.error == "HTTP 404"
    url = f"http://127.0.0.1:{_free_port()}/hooks/secret-token"
    waits = []
    refused = deliver(url, {"event": "x"}, FAST, sleep=waits.append)
    assert not refused.delivered and refused.attempts == FAST.attempts and "URLError" in refused.error
    assert len(waits) == FAST.attempts - 1
    assert "secret-token" not in refused.receiver + refused.error


def test_retries_stop_within_the_total_time():
    bounded = Retries(attempts=10, backoff_s=4, total_s=10, timeout_s=1)
    now, waits = [0.0], []

    def sleep(s):
        waits.append(s)
        now[0] += s

    d = deliver(f"http://127.0.0.1:{_free_port()}/x", {}, bounded, sleep=sleep, clock=lambda: now[0])
    assert not d.delivered and waits == [4]  # 4 s + 8 s would pass total_s and "gave up within 10 s" in d.error
    assert sum(waits) < bounded.total_s and d.attempts < bounded.attempts


def test_urls_are_masked_and_env_urls_checked():
    assert masked_url("https://hooks.slack.com/services/T0/B0/XYZ?token=1") == "https://hooks.slack.com/***"
    hook = Webhook(url_env="LEM_TEST_HOOK")
    config = NotifyConfig(webhooks=[hook])
    [unset] = notify(config, "hf_publish", "t", {}, {})
    assert not unset.delivered and "LEM_TEST_HOOK is not set" in unset.error
    [local_file] = notify(config, "hf_publish", "t", {}, {"LEM_TEST_HOOK": "file:///etc/passwd"})
    assert not local_file.delivered and "http(s)" in local_file.error and "passwd" not in local_file.error


def test_the_notify_file_is_refused_naming_the_field(tmp_path):
    path = tmp_path / "notify.yaml"
    assert load_notify_config(path).webhooks == []  # no file: nobody is notified
    path.write_text("notify:\n  webhooks:\n    - url: https://example.org/h\n      events: [run_failed]\n")
    with pytest.raises(ConfigError, match=r"notify.webhooks.0.events.0: .*run_failure.*got 'run_failed'"):
        load_notify_config(path)
    path.write_text("notify:\n  webhooks:\n    - {url: ftp://example.org/h}\n")
    with pytest.raises(
        ConfigError, match=r"notify.webhooks.0: url must be an http\(s\) URL, got ftp://example.org/\*\*\*"
    ):
        load_notify_config(path)
    path.write_text("notify:\n  webhook: []\n")
    with pytest.raises(ConfigError, match="notify.webhook: unknown key"):
        load_notify_config(path)
    path.write_text("notify:\n  webhooks:\n    - {url_env: HOOK, format: slack}\n  retries: {attempts: 2}\n")
    config = load_notify_config(path)
    assert config.webhooks[0].format == "slack" and config.retries.attempts == 2


def test_a_notify_block_in_an_experiment_file_points_to_the_instance_file():
    from gpu_ops.config import parse_config

    with pytest.raises(ConfigError, match=r"exp.yaml: notify: webhooks are set for the platform instance.*notify.yaml"):
        parse_config({"name": "x", "model": "builtin:tiny-llama", "notify": {"webhooks": []}}, "exp.yaml")
