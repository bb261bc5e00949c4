"""Fault injection: the platform's own parts fail under it. Each case ends with the stored data byte-identical
(checksums before and after), nothing half-written (no temp entry left behind), and a run that either resumes or
fails with a reason and a way to retry, which the case then takes. docs/platform.md ("When a part fails") says what
an operator sees and does in each case.

In-process cases (disk full at each write, the Hub failing during publish, a result folder removed from under its
queued run) run on every CI job; the process cases (kill -9 of the daemon, the webserver and the user-code server;
PostgreSQL restarted; Redis stopped) run the real services, on private PostgreSQL and Redis servers started here on
free ports so the shared ones are never touched."""

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from energy_assets import io as asset_io
from energy_assets.assets import publish
from energy_assets.assets.publish import HuggingFaceHub, PublishError, hf_dataset_snapshot, snapshot_folder
from energy_assets.assets.raw import SOURCE_TAG, UPLOAD_TAG
from energy_assets.assets.site import leaderboard_site
from gpu_ops import results
from tests.energy_assets.assets.test_pipeline import ASSETS
from tests.energy_assets.conftest import add_partitions
from tests.hub_stub import HubStub

pytestmark = pytest.mark.timeout(600)  # per case, on 2 shared cores (the first also builds the session result)

EXPERIMENT, HARDWARE = "builtin-tiny-llama__pytorch", "h100-80gb-hbm3"  # the good GPU result's partition
PARTITION = f"{EXPERIMENT}|{HARDWARE}"
EVERYTHING = [*ASSETS, hf_dataset_snapshot, leaderboard_site]


def checksums(*roots: Path) -> dict[str, str]:
    """sha256 of every file under `roots`, by path: what "byte-identical" compares."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        if root.exists()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def temp_entries(*roots: Path) -> list[Path]:
    """What a write in progress leaves beside its target: `.name.tmp-*` folders, `.name.*.tmp` files, `.old` folders."""
    return [
        p for root in roots if root.exists() for p in root.rglob(".*") if ".tmp" in p.name or p.name.endswith(".old")
    ]


def enospc(real, target: str = "", after: int = 0):
    """`real` (a write taking a path first) that fails as a full disk does on its `after`+1-th call whose path ends
    with `target`: half the bytes written, then ENOSPC."""
    calls = {"n": 0}

    def write(path, data, *args, **kwargs):
        if str(path).endswith(target):
            calls["n"] += 1
            if calls["n"] > after:
                half = data[: len(data) // 2]
                real(path, half, *args, **kwargs)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data, *args, **kwargs)

    return write


def _failure(result) -> str:
    error = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0].event_specific_data.error
    return error.message + (error.cause.message if error.cause else "")


@pytest.fixture
def platform_data(good_gpu_result, storage, resources, instance):
    """One ingested upload with its statistics, leaderboard, dataset snapshot and site: the stored data a fault must
    leave as it is."""
    shutil.copytree(good_gpu_result, storage.upload_dir(EXPERIMENT, HARDWARE) / "upload1")
    add_partitions(instance, [EXPERIMENT], [HARDWARE])
    resources = {**resources, "hf_hub": HuggingFaceHub(mode="off")}
    tags = {SOURCE_TAG: "upload", UPLOAD_TAG: "upload1"}
    assert dg.materialize(
        ASSETS[:2], partition_key=PARTITION, instance=instance, resources=resources, tags=tags
    ).success
    after = ["leaderboard", "hf_dataset_snapshot", "leaderboard_site"]
    assert dg.materialize(EVERYTHING, selection=after, instance=instance, resources=resources).success
    return resources


def test_a_full_disk_at_each_write_keeps_what_was_stored_and_a_retry_completes(
    platform_data, storage, instance, monkeypatch
):
    """Ingestion, the statistics write, the HF snapshot and the site build each hit ENOSPC midway through a file."""
    roots = (Path(storage.io_base().path), snapshot_folder(storage), storage.root / "site")
    shutil.copytree(
        storage.upload_dir(EXPERIMENT, HARDWARE) / "upload1", storage.upload_dir(EXPERIMENT, HARDWARE) / "b"
    )
    upload = {SOURCE_TAG: "upload", UPLOAD_TAG: "b"}  # the same partition, uploaded again: re-ingested
    steps = {
        "ingestion": (shutil, "copyfile", _copy_enospc(after=2), ["raw_measurements"], upload),
        "statistics": (asset_io, "write_file_atomic", _fdopen_enospc(), ["cycle_statistics"], {}),
        "hf snapshot": (Path, "write_text", enospc(Path.write_text, "README.md"), ["hf_dataset_snapshot"], None),
        "site build": (Path, "write_text", enospc(Path.write_text, "index.html"), ["leaderboard_site"], None),
    }
    for step, (owner, name, failing, selection, tags) in steps.items():
        before = checksums(*roots)
        kwargs = dict(partition_key=PARTITION, tags=tags) if tags is not None else {}
        with monkeypatch.context() as m:
            m.setattr(owner, name, failing)
            res = dg.materialize(
                EVERYTHING,
                selection=selection,
                instance=instance,
                resources=platform_data,
                raise_on_error=False,
                **kwargs,
            )
        assert not res.success and "No space left on device" in _failure(res), step
        assert checksums(*roots) == before, f"{step}: stored data changed"
        assert temp_entries(storage.root) == [], f"{step}: half-written files left"
        # the retry an operator makes once space is free: re-execute the failed run
        assert dg.materialize(
            EVERYTHING, selection=selection, instance=instance, resources=platform_data, **kwargs
        ).success
        assert temp_entries(storage.root) == [], step
    assert results.read_tables(Path(storage.io_base().path) / "raw_measurements" / EXPERIMENT / HARDWARE)


def _copy_enospc(after: int):
    """shutil.copyfile that fails as a full disk does on its `after`+1-th call: half the file copied, then ENOSPC."""
    real, calls = shutil.copyfile, {"n": 0}

    def copyfile(src, dst, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            data = Path(src).read_bytes()
            Path(dst).write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *args, **kwargs)

    return copyfile


def _fdopen_enospc():
    """write_file_atomic whose file write fails halfway with ENOSPC (the statistics' Parquet file)."""
    real = results.write_file_atomic

    def write_file_atomic(target, data):
        real_fdopen = os.fdopen

        class Half:
            def __init__(self, fh):
                self.fh = fh

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

            def write(self, data):
                self.fh.write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        os.fdopen = lambda fd, mode: Half(real_fdopen(fd, mode))
        try:
            real(target, data)
        finally:
            os.fdopen = real_fdopen

    return write_file_atomic


def test_a_result_folder_removed_from_under_its_queued_run_fails_it_naming_the_retry(platform_data, storage, instance):
    roots = (Path(storage.io_base().path), storage.uploads_dir)
    queued = storage.upload_dir(EXPERIMENT, HARDWARE) / "queued"
    shutil.copytree(storage.upload_dir(EXPERIMENT, HARDWARE) / "upload1", queued)
    shutil.rmtree(queued)  # an operator cleans uploads/ while the run waits in the queue
    before = checksums(*roots)
    tags = {SOURCE_TAG: "upload", UPLOAD_TAG: "queued"}
    res = dg.materialize(
        ASSETS[:2], partition_key=PARTITION, instance=instance, resources=platform_data, tags=tags, raise_on_error=False
    )
    message = _failure(res)
    assert not res.success and f"no uploaded result folder queued for {PARTITION}" in message
    assert f"put it back at {queued}" in message and "re-execute this run" in message
    assert checksums(*roots) == before and temp_entries(storage.root) == []
    assert [r.run_id for r in instance.fetch_materializations(dg.AssetKey("raw_measurements"), limit=5).records] == [
        r.run_id for r in instance.fetch_materializations(dg.AssetKey("raw_measurements"), limit=5).records[:1]
    ]
    shutil.copytree(storage.upload_dir(EXPERIMENT, HARDWARE) / "upload1", queued)  # the retry it names
    assert dg.materialize(ASSETS[:2], partition_key=PARTITION, instance=instance, resources=platform_data, tags=tags)


# ------------------------------------------------------------------------------------------------------- the Hub
SNAPSHOT = "0123456789abcdef0123456789abcdef"
TAG = f"snapshot-{SNAPSHOT[:16]}"


@pytest.fixture
def dataset(tmp_path) -> Path:
    folder = tmp_path / "hf_dataset"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text("# dataset\n")
    (folder / "data" / "leaderboard.csv").write_text("a,b\n1,2\n")
    return folder


def _hub(stub: HubStub, **over) -> HuggingFaceHub:
    return HuggingFaceHub(
        repo_id="lem-org/llm-energy", endpoint=stub.url, mode="on", token="hf_FaultTest", timeout_s=0.5, backoff_s=0.1
    ).model_copy(update=over)


def _tagged_commits_are_whole(stub: HubStub, dataset: Path) -> None:
    repo = stub.repos["lem-org/llm-energy"]
    local = {p.relative_to(dataset).as_posix(): p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    for tag, oid in repo.tags.items():
        files = next(f for o, f, _ in repo.commits if o == oid)
        assert {k: v for k, v in files.items() if k != ".gitattributes"} == local, f"{tag} names a partial commit"


@pytest.mark.parametrize(
    "route, kind, retries",
    [
        (r"POST .*/commit/", "500", 1),
        (r"POST .*/commit/", "timeout", 1),
        (r"POST .*/commit/", "drop", 1),
        (r"POST .*/commit/", "lost-answer", 1),  # the commit landed, its answer did not: the retry only tags it
        (r"POST .*/tag/", "500", 1),
        (r"GET .*/tree/", "drop", 0),  # huggingface_hub retries its GETs itself
    ],
)
def test_publish_retries_a_failing_hub_with_backoff_and_tags_only_a_whole_commit(
    dataset, monkeypatch, route, kind, retries
):
    waits = []
    monkeypatch.setattr(publish, "sleep", waits.append)
    with HubStub() as stub:
        stub.stall_s = 1.5
        stub.faults = [(route, kind)]
        result = _hub(stub).publish(dataset, SNAPSHOT)
        repo = stub.repos["lem-org/llm-energy"]
    assert stub.faults == [] and waits == [0.1] * retries  # the fault was met; a retry after the backoff
    snapshots = [c for c in repo.commits if c[2].startswith("Snapshot")]
    assert len(snapshots) == 1 and repo.tags == {TAG: snapshots[0][0]} and result["tag"] == TAG
    _tagged_commits_are_whole(stub, dataset)


def test_a_hub_down_for_every_try_fails_the_publish_naming_the_retry_and_tags_nothing(dataset, monkeypatch):
    waits = []
    monkeypatch.setattr(publish, "sleep", waits.append)
    with HubStub() as stub:
        stub.faults = [(r"POST .*/commit/", "500")] * 4
        with pytest.raises(PublishError, match="failed after 4 tries: .*materialize hf_dataset_publish again") as exc:
            _hub(stub).publish(dataset, SNAPSHOT)
        repo = stub.repos["lem-org/llm-energy"]
    assert waits == [0.1, 0.2, 0.4] and "hf_FaultTest" not in str(exc.value)
    assert repo.tags == {} and [c[2] for c in repo.commits] == ["initial commit"]


# --------------------------------------------------------------------------------------------- Dagster's processes
def _restart(platform, name: str) -> int:
    """kill -9 one of the platform's processes (never its children: the run it launched goes on) and start it again
    the way Platform started it."""
    import signal
    import subprocess

    from energy_assets.ops.local import REPO

    i = 0 if name == "webserver" else 1
    proc = platform.procs[i]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    log = open(platform.log_dir / f"{name}-restarted.log", "ab")
    platform.procs[i] = subprocess.Popen(
        proc.args, cwd=REPO, env=platform.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return proc.pid  # its process group: what it started (code servers, the run) is ended with it after the test


def _code_servers(pid: int) -> list:
    import psutil

    return [c for c in psutil.Process(pid).children(recursive=True) if "grpc" in " ".join(c.cmdline())]


@pytest.mark.slow
def test_kill_9_of_the_daemon_webserver_and_code_server_loses_nothing(tmp_path, monkeypatch):
    """The daemon is killed while a measurement runs, the webserver after it, then the daemon's user-code server
    while the experiment inbox has files to register. The run finishes (or is failed by run monitoring and its
    re-execution finishes), every file registers once with one run per partition, and the partition stored before
    the faults is byte-identical."""

    from energy_assets.ops.local import Platform, prepare_home
    from energy_assets.resources import StorageResource
    from tests.energy_assets.conftest import HW, experiment_config

    home, storage_dir = prepare_home(tmp_path / "home", "sqlite"), tmp_path / "storage"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("LEM_STORAGE", str(storage_dir))
    monkeypatch.setenv("LEM_INBOX_SETTLE_S", "0")
    storage = StorageResource(base_path=str(storage_dir))
    experiment = "builtin-tiny-llama__pytorch"
    storage.register_experiment(experiment, HW, experiment_config("tiny", "builtin:tiny-llama"))
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("experiment", [experiment])
    instance.add_dynamic_partitions("hardware", [HW])
    orphans: list[int] = []
    try:
        _faults_on_a_live_platform(Platform(home, storage_dir), storage, instance, experiment, orphans)
    finally:
        import signal

        for group in orphans:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


def _faults_on_a_live_platform(platform, storage, instance, experiment: str, orphans: list[int]) -> None:
    import time

    from tests.energy_assets.conftest import HW, experiment_yaml

    with platform:
        run_id = platform.launch_partition(experiment, HW)
        deadline = time.monotonic() + 300
        while instance.get_run_by_id(run_id).status != dg.DagsterRunStatus.STARTED:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(1)
        orphans.append(_restart(platform, "daemon"))  # mid-measurement
        orphans.append(_restart(platform, "webserver"))
        platform.wait_ready(180)
        status = platform.wait_run(run_id, timeout_s=400)
        if status != "SUCCESS":  # failed by run monitoring: the operator re-executes it (docs/platform.md)
            assert status == "FAILURE"
            run_id = platform.launch_partition(experiment, HW)
            assert platform.wait_run(run_id, timeout_s=400) == "SUCCESS"
        stored = Path(storage.io_base().path) / "raw_measurements" / experiment / HW
        assert results.read_tables(stored) and temp_entries(storage.root) == []
        before = checksums(Path(storage.io_base().path) / "raw_measurements")

        for i in range(3):  # three new partitions, dropped at once
            (storage.inbox_dir / f"hw{i}.yaml").write_text(
                experiment_yaml("tiny", "builtin:tiny-llama", hardware=[f"fault-hw-{i}"])
            )
        daemon = platform.procs[1].pid
        deadline = time.monotonic() + 60
        while not _code_servers(daemon) and time.monotonic() < deadline:
            time.sleep(0.5)
        for server in _code_servers(daemon):  # mid tick, or between two: the next tick must take what this one lost
            server.kill()
        deadline = time.monotonic() + 300
        while True:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"lem/experiment_file": "hw0.yaml"}))
            runs += instance.get_runs(filters=dg.RunsFilter(tags={"lem/experiment_file": "hw1.yaml"}))
            runs += instance.get_runs(filters=dg.RunsFilter(tags={"lem/experiment_file": "hw2.yaml"}))
            if len(runs) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(2)
        for r in runs:  # not measured here (no such hardware): cancel before they queue forever
            if not r.is_finished:
                instance.report_run_canceled(r)
    assert sorted(r.tags["dagster/partition"] for r in runs) == [f"{experiment}|fault-hw-{i}" for i in range(3)]
    assert checksums(Path(storage.io_base().path) / "raw_measurements") == before
    assert sorted(p.name for p in storage.experiments_dir.rglob("fault-hw-*.json")) == [
        f"fault-hw-{i}.json" for i in range(3)
    ]


# ------------------------------------------------------------------------------------------------ PostgreSQL
class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb, pg_ctl) on a free port, run as the `postgres` user: restarting it
    disturbs no one (the shared server on 5432 is never touched)."""

    def __init__(self):
        import shutil as sh

        from energy_assets.ops.local import free_port

        self.bin = next(
            (
                Path(p).parent
                for p in (sh.which("pg_ctl"), *sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")))
                if p
            ),
            None,
        )
        # not under pytest's temp folder: its parents are readable by their owner only, and the server runs as postgres
        self.root, self.port = Path(tempfile.mkdtemp(prefix="lem-pg-")), free_port()
        self.data = self.root / "pgdata"

    def _as_postgres(self, *cmd: str) -> None:
        import subprocess

        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        # no pipes: the server started by pg_ctl would hold them open
        subprocess.run([*prefix, *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def start(self) -> "PrivatePostgres":
        if self.bin is None:
            pytest.skip("PostgreSQL server binaries (pg_ctl, initdb) not installed")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o700)
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust")
        self.ctl("start")
        return self

    def ctl(self, action: str) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
        log = str(self.root / "server.log")
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", log, "-o", opts, "-w", "-m", "fast", action
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ctl("stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.mark.slow
def test_postgresql_restarted_during_a_run_loses_nothing_and_the_retry_completes(
    good_gpu_result, tmp_path, storage, resources, monkeypatch
):
    """The PostgreSQL instance variant: the server restarts while a partition is being ingested and its statistics
    computed. The run finishes or fails with a connection error; re-executed, it completes; the partition stored
    before is byte-identical and the instance still lists every run."""
    import threading
    import time

    from energy_assets.ops.local import prepare_home

    pg = PrivatePostgres()
    try:
        pg.start()
        monkeypatch.setenv("DAGSTER_PG_URL", pg.url)
        home = prepare_home(tmp_path / "home", "postgres")
        for name in ("a", "b"):
            shutil.copytree(good_gpu_result, storage.upload_dir(EXPERIMENT, HARDWARE) / name)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            add_partitions(instance, [EXPERIMENT], [HARDWARE])
            first = {SOURCE_TAG: "upload", UPLOAD_TAG: "a"}
            assert dg.materialize(
                ASSETS[:2], partition_key=PARTITION, instance=instance, resources=resources, tags=first
            )
            stored = Path(storage.io_base().path)
            before = checksums(stored / "raw_measurements")
            outcome = {}

            def run():
                try:
                    tags = {SOURCE_TAG: "upload", UPLOAD_TAG: "b"}
                    outcome["success"] = dg.materialize(
                        ASSETS[:2],
                        partition_key=PARTITION,
                        instance=instance,
                        resources=resources,
                        tags=tags,
                        raise_on_error=False,
                    ).success
                except Exception as exc:  # the instance itself unreachable mid-run
                    outcome["error"] = f"{type(exc).__name__}: {exc}"

            worker = threading.Thread(target=run)
            worker.start()
            time.sleep(1.0)  # the run has started: its events are being written
            pg.ctl("restart")
            worker.join(timeout=300)
            assert not worker.is_alive() and outcome, "the run hung on the restarted server"
            if not outcome.get("success"):  # failed with the connection: the retry an operator makes
                assert dg.materialize(
                    ASSETS[:2],
                    partition_key=PARTITION,
                    instance=instance,
                    resources=resources,
                    tags={SOURCE_TAG: "upload", UPLOAD_TAG: "b"},
                ).success
            assert results.read_tables(stored / "raw_measurements" / EXPERIMENT / HARDWARE)
            assert checksums(stored / "raw_measurements") == before  # a and b hold the same tables
            assert temp_entries(storage.root) == []
            assert len(instance.get_runs()) >= 2
    finally:
        pg.stop()


# ------------------------------------------------------------------------------------------------------ Redis
@pytest.mark.slow
def test_redis_stopped_during_a_celery_fleet_run_loses_nothing_and_the_run_completes(
    tmp_path, monkeypatch, pg_database
):
    """A private redis-server (free port) is the fleet's broker; it stops while a worker measures, then starts again.
    The run completes, with no retry; the partition is stored whole, once."""
    import signal
    import subprocess
    import sys
    import time

    from energy_assets.ops.local import Platform, free_port, prepare_home
    from energy_assets.resources import StorageResource
    from tests.energy_assets.conftest import HW, experiment_config

    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    broker, backend = f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1"

    def redis_up() -> subprocess.Popen:
        proc = subprocess.Popen(
            [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not _answers(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        return proc

    home, shared = tmp_path / "home", tmp_path / "shared"
    monkeypatch.setenv("DAGSTER_PG_URL", pg_database)
    prepare_home(home, "postgres")
    for k, v in {
        "DAGSTER_HOME": str(home),
        "LEM_STORAGE": str(shared),
        "LEM_EXECUTOR": "celery",
        "LEM_CELERY_BROKER": broker,
        "LEM_CELERY_BACKEND": backend,
        "LEM_QUEUE_PREFIX": "gpu-faults-",
        "LEM_LOCK_DIR": str(tmp_path / "locks"),
        "LEM_WORKER_LOST_GRACE_S": "6",
    }.items():
        monkeypatch.setenv(k, v)
    storage = StorageResource(base_path=str(shared))
    experiment = "builtin-small-llama__pytorch"
    # long enough that the worker still measures when Redis is back (asserted below), no longer
    cfg = experiment_config("slow", "builtin:small-llama", prompts={"count": 24}, max_output_tokens=32)
    storage.register_experiment(experiment, HW, cfg)
    redis, worker = redis_up(), None
    instance = dg.DagsterInstance.get()
    try:
        instance.add_dynamic_partitions("experiment", [experiment])
        instance.add_dynamic_partitions("hardware", [HW])
        with Platform(home, shared) as platform:
            log = open(tmp_path / "worker.log", "ab")
            worker = subprocess.Popen(
                [sys.executable, "-m", "energy_assets.fleet.worker", "--hardware", HW, "--name", f"faults-{port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])),
            )
            run_id = platform.launch_partition(experiment, HW)
            deadline = time.monotonic() + 300
            while "STEP_START" not in _step_events(instance, run_id):
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
                time.sleep(0.5)
            time.sleep(2)  # mid-measurement
            redis.terminate()
            redis.wait(timeout=30)
            time.sleep(5)
            redis = redis_up()
            ended = {"STEP_SUCCESS", "STEP_FAILURE"} & _step_events(instance, run_id)
            assert not ended, f"the step ended ({ended}) before Redis was back: the outage met no running step"
            # the outage is waited out: failing the run would let its retry measure the partition again while the
            # worker, which went on measuring, stored it too (two materializations of one measurement)
            assert platform.wait_run(run_id, 600) == "SUCCESS"
            assert instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": run_id})) == []
        stored = Path(storage.io_base().path) / "raw_measurements" / experiment / HW
        assert results.read_tables(stored) and temp_entries(shared) == []
        assert len(instance.fetch_materializations(dg.AssetKey("raw_measurements"), limit=5).records) == 1
    finally:
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        redis.terminate()
        redis.wait(timeout=30)
        instance.dispose()


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _step_events(instance, run_id: str) -> set[str]:
    return {e.dagster_event.event_type_value for e in instance.all_logs(run_id) if e.dagster_event}
