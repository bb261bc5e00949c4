import os
import uuid
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest
import yaml

from energy_assets.io import ParquetIOManager, ResultTablesIOManager
from energy_assets.resources import GpuResource, StorageResource
from gpu_ops.backends.pytorch import PytorchBackend
from gpu_ops.config import ExperimentConfig, parse_config
from gpu_ops.environment import cpu_profile
from gpu_ops.runner import run_experiment
from tests.conftest import REQUIRE_SERVICES
from tests.fake_nvml import FakeGpu, FakeNVML
from tests.gpu_ops.test_runner import BASE

HW = cpu_profile()


def experiment_yaml(name: str, model: str, **over) -> str:
    """The small experiment the engine's tests run (tests.gpu_ops.test_runner.BASE) as a file named `name`."""
    return yaml.safe_dump(dict(BASE, name=name, model=model, **over))


def experiment_config(name: str, model: str, **over) -> ExperimentConfig:
    """experiment_yaml's file as the inbox registers it: parsed and validated."""
    return parse_config(yaml.safe_load(experiment_yaml(name, model, **over)))


@pytest.fixture
def storage(tmp_path) -> StorageResource:
    return StorageResource(base_path=str(tmp_path / "storage"))


@pytest.fixture
def resources(storage):
    base = storage.io_base()
    return {
        "storage": storage,
        "gpu": GpuResource(),
        "tables_io_manager": ResultTablesIOManager(base_path=base),
        "parquet_io_manager": ParquetIOManager(base_path=base),
    }


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def add_partitions(instance, experiments, hardware):
    instance.add_dynamic_partitions("experiment", list(experiments))
    instance.add_dynamic_partitions("hardware", list(hardware))


def fake_gpu_result(
    tmp_path: Path, name="gpu-exp", model="builtin:tiny-llama", load_w=250.0, folder="upload1", **over
) -> Path:
    """A result folder as a GPU worker would write it (energy through the NVML fake): `load_w` while the
    backend generates, 80 W otherwise; windows long enough (>= 1 s) for the counter to be trusted."""
    params = dict(
        prompts={"count": 384},
        batching={"strategy": "static", "batch_size": 32},
        max_output_tokens=16,
        min_output_tokens=16,
    )
    params.update(over)
    cfg = parse_config(yaml.safe_load(experiment_yaml(name, model, **params)))
    busy = {"on": False}

    def run(self, requests, clock, _real=PytorchBackend.run):
        busy["on"] = True
        try:
            return _real(self, requests, clock)
        finally:
            busy["on"] = False

    nv = FakeNVML([FakeGpu(power=lambda t: load_w if busy["on"] else 80.0)])
    with mock.patch.object(PytorchBackend, "run", run):
        out = run_experiment(cfg, tmp_path / "remote", nvml=nv, folder_name=folder)
    return out.folder


PG = os.environ.get("LEM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_database():
    yield from _pg_database()


@pytest.fixture(scope="module")
def pg_database_module():
    """pg_database for a module's tests that share one platform."""
    yield from _pg_database()


def _pg_database():
    """A fresh database on the shared PostgreSQL server, dropped afterwards; its URL."""
    psycopg2 = pytest.importorskip("psycopg2") if not REQUIRE_SERVICES else __import__("psycopg2")
    try:
        admin = psycopg2.connect(PG, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        if REQUIRE_SERVICES:
            pytest.fail(
                f"PostgreSQL unreachable at {PG} ({exc}); start it (pg_ctlcluster <ver> main start) or unset "
                "LEM_REQUIRE_SERVICES"
            )
        pytest.skip(f"PostgreSQL unreachable at {PG}")
    admin.autocommit = True
    name = f"lem_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; dagster-postgres ships psycopg2
    url = PG.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://") + f"/{name}"
    try:
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


SUBMITTER = "alice-lab"


def register_submitter(storage: StorageResource, keys: Path, submitter: str = SUBMITTER) -> Path:
    """An administrator registers a new key for `submitter` in the storage's registry; returns the private key."""
    from gpu_ops.signing import KeyRegistry, keygen

    key = keys / f"{submitter}.pem"
    registry = KeyRegistry.load(storage.submitters_file)
    registry.add(submitter, keygen(key), "2026-01-01T00:00:00+00:00")
    registry.save(storage.submitters_file)
    return key


def signed_copy(src: Path, dest: Path, key: Path, submitter: str = SUBMITTER) -> Path:
    """A copy of a result folder at `dest`, signed as the submitter would before uploading it."""
    import shutil

    from gpu_ops.signing import sign_folder

    shutil.copytree(src, dest)
    sign_folder(dest, key, submitter)
    return dest


def moderate(storage: StorageResource, instance, folder: str, decision: str = "approve", reason: str = ""):
    """An administrator's decision, launched as the moderate_submission job (as from the Launchpad)."""
    from energy_assets.sensors.moderation import moderate_job

    return moderate_job.execute_in_process(
        run_config={"ops": {"decide": {"config": {"folder": folder, "decision": decision, "reason": reason}}}},
        resources={"storage": storage},
        instance=instance,
        raise_on_error=False,
    )
