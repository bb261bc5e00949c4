"""Run the platform on one machine: an instance home, the webserver and daemon as subprocesses, and the
GraphQL calls the UI makes. Used by the demo (`python -m energy_assets.ops.demo`) and the end-to-end test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCATIONS_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


class PlatformError(RuntimeError):
    """Dagster's processes or the code location failed: the message says which, with the cause."""


INSTANCE_FILES = {"sqlite": REPO / "dagster.yaml", "postgres": REPO / "examples" / "instance" / "dagster.postgres.yaml"}


def prepare_home(home: Path, variant: str | None = None) -> Path:
    """Copy the instance config chosen by LEM_INSTANCE (sqlite | postgres) into DAGSTER_HOME."""
    variant = variant or os.environ.get("LEM_INSTANCE", "sqlite")
    if variant not in INSTANCE_FILES:
        raise SystemExit(f"LEM_INSTANCE={variant!r}: use one of {', '.join(INSTANCE_FILES)}")
    if variant == "postgres" and not os.environ.get("DAGSTER_PG_URL"):
        raise SystemExit(
            "LEM_INSTANCE=postgres needs DAGSTER_PG_URL, e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/dagster"
        )
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(INSTANCE_FILES[variant], home / "dagster.yaml")
    return home


def engine_cache_root(storage: Path) -> Path:
    """Where a platform on `storage` keeps its engine server's caches (synthetic weights, compile caches): a run that
    should find what the platform's engines compiled (benchmarks/warm_campaign.py's compare) points
    LEM_ENGINE_CACHE_DIR here."""
    return Path(storage).resolve() / "engine-cache"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Platform:
    """dagster-webserver + dagster-daemon for this repo's workspace, stopped together."""

    def __init__(
        self,
        home: Path,
        storage: Path,
        port: int | None = None,
        log_dir: Path | None = None,
        workspace: Path | None = None,
        engine_server: bool = True,
    ):
        """`engine_server`: start a warm engine server (gpu_ops.serve) that the runs measure on, so an engine
        stays loaded from one run to the next (its caches under the storage's engine-cache/)."""
        self.home, self.storage = Path(home).resolve(), Path(storage).resolve()
        self.workspace = Path(workspace or REPO / "workspace.yaml").resolve()
        self.port = port or free_port()
        self.log_dir = Path(log_dir or self.home / "process-logs")
        self.procs: list[subprocess.Popen] = []
        self.engines = None
        if engine_server:
            from gpu_ops.serve import ServerProcess

            self.engines = ServerProcess(
                self.home / "engine.sock", engine_cache_root(self.storage), self.log_dir / "engine-server.log"
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict:
        env = dict(os.environ, DAGSTER_HOME=str(self.home), LEM_STORAGE=str(self.storage), PYTHONUNBUFFERED="1")
        env.setdefault("LEM_DAGSTER_URL", self.url)  # the site and the metadata link into this UI
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        if self.engines is not None:
            from gpu_ops.serve import SERVER_ENV

            env[SERVER_ENV] = str(self.engines.socket)  # the runs measure on the platform's warm engines
        return env

    def start(self, timeout_s: float = 120) -> Platform:
        """Start both processes with this interpreter (`python -m`: found however Dagster was installed, console
        scripts on PATH or not) and wait until the webserver answers and the code location has loaded."""
        from energy_assets.dagster_private import DAEMON_MODULE

        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.create_storage()
        if self.engines is not None:
            self.engines.start(self.env())
        workspace = str(self.workspace)
        cmds = {
            "webserver": [
                sys.executable,
                "-m",
                "dagster_webserver",
                "-w",
                workspace,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            "daemon": [sys.executable, "-m", DAEMON_MODULE, "run", "-w", workspace],
        }
        for name, cmd in cmds.items():
            log = open(self.log_dir / f"{name}.log", "ab")
            self.procs.append(
                subprocess.Popen(
                    cmd, cwd=REPO, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        try:
            self.wait_ready(timeout_s)
        except BaseException:  # a failed start leaves nothing running (`with` never reaches __exit__ then)
            self.stop()
            raise
        return self

    def create_storage(self) -> None:
        """Create the instance's databases here, once, before the webserver, the daemon and the caller all open a fresh
        instance at the same moment: each migrates it, and the race left two alembic heads ("Version table
        'alembic_version' has more than one head present"), seen in the demo test."""
        import dagster as dg

        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            instance.get_runs(limit=1)
            instance.all_instigator_state()
            instance.get_latest_materialization_event(dg.AssetKey("leaderboard"))

    def wait_ready(self, timeout_s: float) -> None:
        import requests

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                r = requests.post(f"{self.url}/graphql", json={"query": LOCATIONS_QUERY}, timeout=5)
                entries = (
                    (r.json().get("data") or {}).get("workspaceOrError", {}).get("locationEntries") if r.ok else None
                )
            except (requests.RequestException, ValueError):
                entries = None
            if entries:
                for entry in entries:
                    loaded = entry.get("locationOrLoadError") or {}
                    if loaded.get("__typename") == "PythonError":
                        raise PlatformError(
                            f"code location '{entry['name']}' failed to load: {loaded.get('message', '').strip()}"
                        )
                if all(e.get("loadStatus") == "LOADED" for e in entries):
                    return self.wait_retries_armed(deadline)
            time.sleep(1)
        raise TimeoutError(
            f"the Dagster webserver did not answer at {self.url} within {timeout_s:.0f} s; see {self.log_dir}"
        )

    def check_alive(self) -> None:
        """Raise, naming its log folder, when the webserver or the daemon has exited while being waited for."""
        for p in self.procs:
            if p.poll() is not None:
                raise PlatformError(f"{' '.join(p.args[1:4])} exited with code {p.returncode}; see {self.log_dir}")

    def wait_retries_armed(self, deadline: float) -> None:
        """With run retries on, wait for the daemon's run-retry consumer to make its first pass: a run that failed
        before it would never be retried (under CI load a lost worker failed its run before that pass)."""
        import dagster as dg

        from energy_assets.dagster_private import run_retries_armed

        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            if not instance.run_retries_enabled:
                return
            while not run_retries_armed(instance):
                self.check_alive()
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        "the Dagster daemon's run-retry consumer made no pass over the event log in time, so a run "
                        f"failed by a lost worker would not be retried; see {self.log_dir / 'daemon.log'}"
                    )
                time.sleep(0.5)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.procs = []
        if self.engines is not None:
            self.engines.stop()  # after the daemon: no run is left to measure on it

    def __enter__(self) -> Platform:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.port)

    def launch_partition(self, experiment: str, hardware: str, tags: dict | None = None) -> str:
        """Launch the `measure` job for one partition through GraphQL, the path the UI's Materialize button takes."""
        part_tags = {
            "dagster/partition": f"{experiment}|{hardware}",
            "dagster/partition/experiment": experiment,
            "dagster/partition/hardware": hardware,
        }
        return self.client().submit_job_execution("measure", tags={**part_tags, **(tags or {})})

    def wait_run(self, run_id: str, timeout_s: float = 600) -> str:
        from dagster import DagsterRunStatus

        deadline = time.monotonic() + timeout_s
        done = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
        while time.monotonic() < deadline:
            status = self.client().get_run_status(run_id)
            if status in done:
                return status.value
            time.sleep(2)
        raise TimeoutError(f"run {run_id} did not finish within {timeout_s:.0f} s")
