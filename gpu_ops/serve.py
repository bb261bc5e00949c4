"""The engine server: a long-lived process that holds an EnginePool and measures the experiments sent to it, so an
engine stays warm across runs that are each their own process (Dagster runs, CLI calls).

    llm-energy-measure serve --socket PATH      # holds the warm engines until SIGTERM / Ctrl-C
    llm-energy-measure run EXP.yaml --server PATH

The protocol is JSON lines on a Unix socket that only this user can open (no group or other permissions): one
request line, then progress lines and one final line. Nothing is unpickled: a request is plain JSON, bounded in
size, its fields allow-listed and its config validated like a file's, so a bad or hostile request gets a one-line
error and the server goes on. One experiment is measured at a time (it needs the GPUs alone); others wait their turn.

    request:  {"op": "run", "config": {...}, "out_root": "/abs/dir", "folder_name": null, "file_sha": null,
               "visible_devices": null}
              {"op": "status"}
    replies:  {"progress": "..."} ... then {"ok": true, "folder": "/abs/dir/name"} or
              {"ok": false, "error": "UserError", "message": "..."}
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gpu_ops.errors import MeasurementError, UserError

log = logging.getLogger("gpu_ops")

SERVER_ENV = "LEM_ENGINE_SERVER"
"""The socket of an engine server that measurements go to (the platform's raw_measurements asset reads it)."""
MAX_REQUEST_BYTES = 1 << 20
REQUEST_TIMEOUT_S = 30.0  # to send the request line: a client that connects and says nothing is dropped
FIELDS = {"op", "config", "out_root", "folder_name", "file_sha", "visible_devices"}
DEVICES = re.compile(r"[A-Za-z0-9,-]{1,1024}")

SOCKET_DIR_PREFIX = "lem-engines-"  # a short temp folder for a socket whose own path is too long (removed on exit)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        send = _sender(self.wfile)
        try:
            request = _read_request(self.connection, self.rfile)
            if request["op"] == "status":
                send({"ok": True, "pid": os.getpid(), "engines": self.server.pool.describe()})
                return
            folder = self.server.measure(request, lambda m: send({"progress": str(m)}))
            send({"ok": True, "folder": str(folder)})
        except (UserError, MeasurementError) as exc:
            send({"ok": False, "error": type(exc).__name__, "message": str(exc)})
        except Exception as exc:  # a failure of one request never ends the server
            log.exception("engine server: request failed")
            send({"ok": False, "error": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}"})


def _sender(wfile) -> Callable[[dict], None]:
    def send(message: dict) -> None:
        try:
            wfile.write((json.dumps(message) + "\n").encode())
            wfile.flush()
        except OSError:  # the client went away: the run goes on, its folder is written
            pass

    return send


def _read_request(conn: socket.socket, rfile) -> dict:
    """One JSON object on one line, at most MAX_REQUEST_BYTES, with known fields of the right types."""
    conn.settimeout(REQUEST_TIMEOUT_S)
    try:
        line = rfile.readline(MAX_REQUEST_BYTES + 1)
    except TimeoutError:
        raise UserError(f"no request line within {REQUEST_TIMEOUT_S:.0f} s") from None
    finally:
        conn.settimeout(None)
    if len(line) > MAX_REQUEST_BYTES or not line.endswith(b"\n"):
        raise UserError(f"request: one JSON line of at most {MAX_REQUEST_BYTES} bytes, ended by a newline")
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"request: not JSON ({exc}); send one JSON object per line") from None
    if not isinstance(request, dict):
        raise UserError("request: a JSON object with 'op' is expected")
    unknown = sorted(set(request) - FIELDS)
    if unknown:
        names = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise UserError(f"request: unknown field(s) {names}; allowed: {', '.join(sorted(FIELDS))}")
    if request.get("op") not in ("run", "status"):
        raise UserError(f"request: op {str(request.get('op'))[:40]!r} is unknown; use 'run' or 'status'")
    if request["op"] == "run":
        if not isinstance(request.get("config"), dict):
            raise UserError("request: 'config' must be the experiment as a JSON object")
        out = request.get("out_root")
        if not isinstance(out, str) or not os.path.isabs(out) or not os.path.isdir(out):
            raise UserError("request: 'out_root' must be the absolute path of an existing folder")
        for key in ("folder_name", "file_sha", "visible_devices"):
            if request.get(key) is not None and not isinstance(request[key], str):
                raise UserError(f"request: '{key}' must be a string or null")
        if request.get("folder_name") is not None:
            from gpu_ops.environment import validate_slug

            validate_slug(request["folder_name"], "request folder_name")
        if request.get("visible_devices") is not None and not DEVICES.fullmatch(request["visible_devices"]):
            raise UserError("request: 'visible_devices' takes GPU indices or UUIDs separated by commas")
    return request


class EngineServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Serves measurements on `socket_path` with one EnginePool; `close()` ends its engines and removes the socket."""

    daemon_threads = True

    def __init__(self, socket_path: Path, cache_root: Path | None = None, nvml=None) -> None:
        from gpu_ops.engines import EnginePool

        self.path = Path(socket_path)
        if self.path.exists():
            if ping(self.path):
                raise UserError(f"an engine server already answers on {self.path}; stop it or choose another --socket")
            self.path.unlink()  # a stale socket of a server that died
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.pool = EnginePool(cache_root)
        self.nvml = nvml
        self.run_lock = threading.Lock()
        old = os.umask(0o077)  # the socket is this user's alone
        try:
            super().__init__(str(self.path), _Handler)
        finally:
            os.umask(old)

    def measure(self, request: dict, progress: Callable[[str], None]) -> Path:
        from gpu_ops.config import parse_config
        from gpu_ops.runner import run_experiment

        cfg = parse_config(request["config"], "request config")
        with self.run_lock, _visible_devices(request.get("visible_devices")):
            outcome = run_experiment(
                cfg,
                Path(request["out_root"]),
                nvml=self.nvml,
                progress=progress,
                folder_name=request.get("folder_name"),
                file_sha=request.get("file_sha"),
                pool=self.pool,
            )
            self.pool.refill()  # spares import while the worker waits for its next run (the next run quiesces them)
        return outcome.folder

    def close(self) -> None:
        self.server_close()
        self.pool.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        if self.path.parent.name.startswith(SOCKET_DIR_PREFIX):  # the temp folder ServerProcess made for the socket
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()


@contextlib.contextmanager
def _visible_devices(value: str | None):
    """The request's CUDA_VISIBLE_DEVICES for its run (the engine identity includes it)."""
    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = value
    try:
        yield
    finally:
        if value is not None:
            if old is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = old


def serve(socket_path: Path, cache_root: Path | None = None, exit_with_parent: bool = False) -> int:
    """Serve until SIGTERM or Ctrl-C (or, with `exit_with_parent`, until the process that started it is gone: a
    worker killed outright leaves no server behind); every engine is closed on the way out."""
    server = EngineServer(socket_path, cache_root)
    if exit_with_parent:
        parent = os.getppid()

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            server.shutdown()

        threading.Thread(target=watch, daemon=True, name="lem-parent-watch").start()

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    log.warning(f"engine server on {server.path} (pid {os.getpid()}); engine caches in {server.pool.cache_root}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
    return 0


class ServerProcess:
    """An engine server in a subprocess of its own session, for a platform or a worker: `start()` waits until it
    answers, `stop()` ends it (SIGTERM: it closes its engines) and removes its socket."""

    def __init__(self, socket_path: Path | None = None, cache_root: Path | None = None, log_file: Path | None = None):
        import tempfile

        # a Unix socket path holds at most 107 bytes: a long folder gets a short temporary one, in /tmp when even
        # the temp folder's path is too long (a test's TMPDIR, say)
        if socket_path is None or len(str(socket_path)) > 100:
            base = tempfile.gettempdir()
            base = base if len(base) <= 60 else "/tmp"
            socket_path = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX, dir=base)) / "engine.sock"
        self.socket, self.cache_root, self.log_file = Path(socket_path), cache_root, log_file
        self.proc = None

    def start(self, env: dict | None = None, timeout_s: float = 60.0) -> ServerProcess:
        import subprocess
        import sys
        import time

        cmd = [sys.executable, "-m", "gpu_ops.cli", "serve", "--socket", str(self.socket), "--exit-with-parent"]
        if self.cache_root:
            cmd += ["--cache-dir", str(self.cache_root)]
        out = open(self.log_file, "ab") if self.log_file else None
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while not ping(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise MeasurementError(
                    f"the engine server did not start on {self.socket}"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            time.sleep(0.2)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(OSError):
            self.socket.unlink()
        if self.socket.parent.name.startswith(SOCKET_DIR_PREFIX):
            with contextlib.suppress(OSError):
                self.socket.parent.rmdir()


def _exchange(socket_path: Path, request: dict, progress: Callable[[str], None] | None = None) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(socket_path))
        except OSError as exc:
            raise UserError(
                f"no engine server answers on {socket_path} ({exc.strerror or exc}); start one with "
                f"`llm-energy-measure serve --socket {socket_path}` or run without --server"
            ) from None
        s.sendall((json.dumps(request) + "\n").encode())
        with s.makefile("rb") as lines:
            for line in lines:
                message = json.loads(line)
                if "progress" in message:
                    if progress:
                        progress(message["progress"])
                    continue
                return message
    raise MeasurementError(f"the engine server on {socket_path} closed the connection before it answered")


def ping(socket_path: Path) -> bool:
    """Whether an engine server answers on `socket_path`."""
    try:
        return bool(_exchange(socket_path, {"op": "status"}).get("ok"))
    except (UserError, MeasurementError, OSError, ValueError):
        return False


def status(socket_path: Path) -> dict:
    return _exchange(socket_path, {"op": "status"})


def run_on_server(
    socket_path: Path,
    cfg,
    out_root: Path,
    *,
    progress: Callable[[str], None] | None = None,
    folder_name: str | None = None,
    file_sha: str | None = None,
    visible_devices: str | None = None,
):
    """Measure `cfg` on the engine server at `socket_path` (its warm engines) and read the result folder it wrote."""
    from gpu_ops.results import ResultFolder, check_output_folder

    out_root = Path(out_root).resolve()
    check_output_folder(out_root)
    out_root.mkdir(parents=True, exist_ok=True)  # the server takes an existing folder only
    reply = _exchange(
        socket_path,
        {
            "op": "run",
            "config": cfg.model_dump(mode="json"),
            "out_root": str(out_root),
            "folder_name": folder_name,
            "file_sha": file_sha,
            "visible_devices": visible_devices,
        },
        progress,
    )
    if not reply.get("ok"):
        kind = MeasurementError if reply.get("error") == "MeasurementError" else UserError
        raise kind(f"engine server: {reply.get('message')}")
    return ResultFolder.read(Path(reply["folder"]))
