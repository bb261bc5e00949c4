"""Scale-out with real services: PostgreSQL instance, Redis broker, a dagster-celery worker subprocess on this
machine's hardware queue, runs launched through the queued coordinator (webserver + daemon subprocesses).

Each test run is isolated on the shared Redis: its own queue names (LEM_QUEUE_PREFIX with a per-run id), its own
worker names, and it deletes only its own keys, so two runs on one machine never take each other's tasks."""

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import psutil
import pytest

from energy_assets.ops.local import Platform, prepare_home
from energy_assets.resources import StorageResource
from tests.conftest import REQUIRE_SERVICES
from tests.energy_assets.conftest import HW, experiment_config

pytestmark = [pytest.mark.services, pytest.mark.slow]
BROKER, BACKEND = "redis://127.0.0.1:6379/5", "redis://127.0.0.1:6379/6"
BIN = Path(sys.executable).parent
MODELS = ("micro-llama", "tiny-llama", "small-llama")
RUN = uuid.uuid4().hex[:8]  # this test run's queues, worker names and Redis keys carry it


@contextlib.contextmanager
def redis_isolated(monkeypatch):
    """Redis reachable; this run's queue prefix set; afterwards only this run's keys are deleted (never a FLUSHDB:
    another test run may be using the same databases)."""
    import redis

    clients = [redis.Redis(host="127.0.0.1", port=6379, db=db, socket_connect_timeout=3) for db in (5, 6)]
    try:
        clients[0].ping()
    except redis.exceptions.ConnectionError as exc:
        if REQUIRE_SERVICES:
            pytest.fail(
                f"Redis unreachable at 127.0.0.1:6379 ({exc}); start redis-server or unset LEM_REQUIRE_SERVICES"
            )
        pytest.skip("Redis unreachable")
    monkeypatch.setenv("LEM_QUEUE_PREFIX", f"gpu-t{RUN}-")
    yield
    for client in clients:
        for key in client.scan_iter(match=f"*{RUN}*"):
            client.delete(key)


@pytest.fixture(scope="module", autouse=True)
def module_tmp(tmp_path_factory):
    """Temp hygiene (#30), on the heaviest module: every test here, and everything it starts (the platform, Celery
    workers killed with -9, a daemon-launched run, the power sampler, the engine server), gets one empty TMPDIR,
    checked empty when the module ends; it once left a lem-worker-* folder per worker."""
    import tempfile

    tmp = tmp_path_factory.mktemp("tmpdir")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(tmp))
        mp.setattr(tempfile, "tempdir", str(tmp))
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp.parent / "inductor"))  # torch's compile cache, meant to last
        yield tmp

    # Not ours: pymp-*, Python's multiprocessing folder of each Celery worker a test kills with -9 on purpose (a
    # process killed outright removes nothing), and the Unix socket a Dagster gRPC code server leaves when its parent
    # stops it. Anything else was left by our code or our tests. Stopping processes get a few seconds to finish.
    def ours(name: str) -> bool:
        return not name.startswith("pymp-") and not stat.S_ISSOCK((tmp / name).lstat().st_mode)

    deadline = time.monotonic() + 15
    while (left := sorted(filter(ours, os.listdir(tmp)))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], f"left in TMPDIR by {__name__}: " + "; ".join(
        f"{n} ({'folder: ' + str(sorted(p.name for p in (tmp / n).iterdir())[:10]) if (tmp / n).is_dir() else 'file'})"
        for n in left
    )


@pytest.fixture(scope="module")
def fleet(module_tmp, tmp_path_factory, pg_database_module):
    """A platform on PostgreSQL with the Celery executor, one for the module's tests (each starts and kills its own
    Celery workers; the platform itself is never killed here): a platform start (webserver, daemon, their code
    servers, the engine server) is CPU time the tests' measurements otherwise wait behind. The killed-worker test
    runs first, on a platform that has stored nothing yet."""
    tmp_path = tmp_path_factory.mktemp("fleet")
    home = tmp_path / "home"
    # the platform's processes take this run's queue prefix from their environment
    with pytest.MonkeyPatch.context() as monkeypatch, redis_isolated(monkeypatch):
        monkeypatch.setenv("DAGSTER_PG_URL", pg_database_module)
        prepare_home(home, "postgres")
        for k, v in {
            "DAGSTER_HOME": str(home),
            "LEM_STORAGE": str(tmp_path / "shared"),
            "LEM_EXECUTOR": "celery",
            "LEM_CELERY_BROKER": BROKER,
            "LEM_CELERY_BACKEND": BACKEND,
            "LEM_LOCK_DIR": str(tmp_path / "locks"),
            "LEM_WORKER_LOST_GRACE_S": "6",
            # Dagster's daemon retries a run failed by a lost worker within 1 s of its failure (default: 5)
            "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1",
        }.items():
            monkeypatch.setenv(k, v)
        storage = StorageResource(base_path=str(tmp_path / "shared"))
        instance = dg.DagsterInstance.get()
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        with Platform(home, tmp_path / "shared") as platform:
            yield platform, storage, instance, tmp_path
        instance.dispose()


def start_worker(tmp_path, role):
    name = f"{role}-{RUN}"  # unique on the shared broker: a ping answered by another run's worker proves nothing
    log = open(tmp_path / f"{name}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "energy_assets.fleet.worker", "--hardware", HW, "--name", name],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=dict(os.environ, PYTHONPATH=str(Path.cwd())),
    )
    from celery import Celery

    app = Celery(broker=BROKER, backend=BACKEND)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
        if any(f"{name}@" in k for r in app.control.ping(timeout=1.0) for k in r):
            return proc
        time.sleep(1)
    raise TimeoutError((tmp_path / f"{name}.log").read_text()[-3000:])


def kill_tree(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def step_pid(instance, run_id, step="raw_measurements"):
    for e in instance.all_logs(run_id):
        if e.dagster_event and e.dagster_event.event_type_value == "STEP_START" and e.step_key == step:
            return e.dagster_event.pid
    return None


def test_killed_worker_fails_the_run_and_a_retry_succeeds(fleet):
    # first on the module's platform: nothing is stored yet, so none of what the killed run left is visible
    platform, storage, instance, tmp = fleet
    exp = "builtin-small-llama__pytorch"
    storage.register_experiment(
        exp,
        HW,
        # still measuring 3 s after its step starts (had it ended, the run succeeds and the test fails); no longer
        experiment_config(
            "slow", "builtin:small-llama", prompts={"count": 16}, max_output_tokens=32, min_output_tokens=32
        ),
    )
    instance.add_dynamic_partitions("experiment", [exp])
    instance.add_dynamic_partitions("hardware", [HW])
    worker = start_worker(tmp, "doomed")
    try:
        run_id = platform.launch_partition(exp, HW)
        deadline = time.monotonic() + 180
        while step_pid(instance, run_id) is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert step_pid(instance, run_id) is not None, "the step never started"
        time.sleep(3)  # mid-measurement
    finally:
        kill_tree(worker)
    assert platform.wait_run(run_id, 180) == "FAILURE"
    text = " ".join(e.message or "" for e in instance.all_logs(run_id)) + str(
        [
            e.dagster_event.event_specific_data
            for e in instance.all_logs(run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "RUN_FAILURE"
        ]
    )
    errors = [
        str(e.dagster_event.event_specific_data.error)
        for e in instance.all_logs(run_id)
        if e.dagster_event and getattr(e.dagster_event.event_specific_data, "error", None)
    ]
    text += " ".join(errors)
    assert "stopped answering" in text and f"doomed-{RUN}@" in text, text[-3000:]
    assert instance.get_latest_materialization_event(dg.AssetKey("raw_measurements")) is None
    assert not (Path(storage.io_base().path) / "raw_measurements" / exp / HW).exists()  # no partial partition visible
    # the lost worker is an infrastructure failure: the daemon retries the run; a new worker serves it
    deadline = time.monotonic() + 120
    retries = []
    while not retries and time.monotonic() < deadline:
        retries = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))
        time.sleep(1)
    assert retries, "no retry run was created for the infrastructure failure"
    worker2 = start_worker(tmp, "w2")
    try:
        assert platform.wait_run(retries[0].run_id, 600) == "SUCCESS"
    finally:
        kill_tree(worker2)
    assert (Path(storage.io_base().path) / "raw_measurements" / exp / HW / "summary.json").is_file()


def test_three_partitions_run_on_the_worker_one_at_a_time(fleet):
    platform, storage, instance, tmp = fleet
    worker = start_worker(tmp, "w1")
    try:
        exps = [f"builtin-{m}__pytorch" for m in MODELS]
        for m, exp in zip(MODELS, exps):
            storage.register_experiment(exp, HW, experiment_config(m, f"builtin:{m}", prompts={"count": 16}))
        instance.add_dynamic_partitions("experiment", exps)
        instance.add_dynamic_partitions("hardware", [HW])
        run_ids = [platform.launch_partition(exp, HW) for exp in exps]
        assert [platform.wait_run(r, 600) for r in run_ids] == ["SUCCESS"] * 3
        worker_pids = {worker.pid} | {p.pid for p in psutil.Process(worker.pid).children(recursive=True)}
        runs = []
        for run_id, exp in zip(run_ids, exps):
            logs = [e.message for e in instance.all_logs(run_id) if e.message]
            assert any(f'to queue "gpu-t{RUN}-{HW}"' in m for m in logs), (
                "the step was not routed to this run's hardware queue"
            )
            assert step_pid(instance, run_id) in worker_pids  # executed by the Celery worker, not the run process
            t = pd.read_parquet(storage.io_base().path + f"/raw_measurements/{exp}/{HW}/experiment.parquet").iloc[0]
            runs.append((pd.Timestamp(t.started_at), pd.Timestamp(t.finished_at)))
        runs.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(runs, runs[1:])), (
            f"measurements overlapped: {runs}"
        )
        import psycopg2

        with psycopg2.connect(os.environ["DAGSTER_PG_URL"].replace("+psycopg2", "")) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE run_id = ANY(%s) AND status = 'SUCCESS'", (run_ids,))
            assert cur.fetchone()[0] == 3  # landed in PostgreSQL-backed storage
    finally:
        kill_tree(worker)


def test_unreachable_services_are_named_fast(tmp_path, monkeypatch):
    def closed_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    home = tmp_path / "home"
    home.mkdir()
    base = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        DAGSTER_PG_URL="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
        LEM_CELERY_BROKER="redis://127.0.0.1:6379/5",
    )
    for env, expected in (
        (
            dict(base, LEM_CELERY_BROKER=f"redis://127.0.0.1:{closed_port()}/0"),
            "Redis (Celery broker) unreachable at 127.0.0.1:",
        ),
        (
            dict(base, DAGSTER_PG_URL=f"postgresql+psycopg2://postgres@127.0.0.1:{closed_port()}/x"),
            "PostgreSQL (Dagster instance) unreachable at 127.0.0.1:",
        ),
    ):
        t0 = time.monotonic()
        r = subprocess.run(
            [sys.executable, "-m", "energy_assets.fleet.worker", "--hardware", HW],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2 and expected in r.stderr, r.stderr
        assert time.monotonic() - t0 < 30  # no hang
    wrong = subprocess.run(
        [sys.executable, "-m", "energy_assets.fleet.worker", "--hardware", "nvidia-h100-80gb-hbm3"],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2 and f"are hardware '{HW}', not 'nvidia-h100-80gb-hbm3': refusing" in wrong.stderr


def test_executor_checks_the_broker_before_submitting(monkeypatch):
    """The executor's own guard (a run launched while Redis is down fails at once with the cause)."""
    from energy_assets.fleet.fleet import ServiceUnreachable, check_reachable, hardware_queue

    t0 = time.monotonic()
    with pytest.raises(
        ServiceUnreachable, match=r"Redis \(Celery broker\) unreachable at 127.0.0.1:1 .*LEM_CELERY_BROKER"
    ):
        check_reachable("redis://127.0.0.1:1/0", "Redis (Celery broker)")
    assert time.monotonic() - t0 < 5
    monkeypatch.delenv("LEM_QUEUE_PREFIX", raising=False)
    assert hardware_queue(HW) == f"gpu-{HW}"
    monkeypatch.setenv("LEM_QUEUE_PREFIX", f"gpu-t{RUN}-")
    assert (
        hardware_queue(HW) == f"gpu-t{RUN}-{HW}"
    )  # a second fleet (or test run) on the same Redis gets its own queues
