"""A GPU fleet worker: a Celery worker serving one hardware profile's queue, after checking that this machine is that
hardware and that Redis and PostgreSQL answer (docs/deployment.md). Beside it runs an engine server
(gpu_ops.serve) that its runs measure on, so an engine stays warm from one run to the next; it stops with the worker.

    python -m energy_assets.fleet.worker --hardware h100-80gb-hbm3 [--gpus 0,1] [--name NAME] [--concurrency 1]
        [--cache-dir DIR] [--no-engine-server]
"""

import argparse
import hashlib
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

from energy_assets.fleet.fleet import ServiceUnreachable, broker_url, hardware_queue, preflight, worker_config_yaml


def worker_config_file(dagster_home: Path) -> Path:
    """The worker's Celery config (`-y`), in DAGSTER_HOME under a name from its content: a worker killed with -9
    leaves no temp folder behind, and a restarted one reuses the file."""
    text = worker_config_yaml()
    path = dagster_home / f"celery-worker-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    if not path.is_file() or path.read_text() != text:
        from gpu_ops.results import write_file_atomic

        write_file_atomic(path, text.encode())
    return path


def run_worker(
    hardware: str,
    gpus: list[int] | None = None,
    name: str | None = None,
    concurrency: int = 1,
    cache_dir: str | None = None,
    engine_server: bool = True,
) -> int:
    """Start a Celery worker for `hardware`'s queue after checking this machine is that hardware, with its engine
    server (engine caches in `cache_dir`, default LEM_ENGINE_CACHE_DIR or ~/.cache/llm-energy-measure/engine);
    blocks until it exits, then stops the server."""
    import subprocess

    from energy_assets.resources import GpuResource
    from gpu_ops.errors import UserError

    local = GpuResource(visible_devices=os.environ.get("LEM_VISIBLE_DEVICES")).local_profile(gpus or [0])
    if local != hardware:
        raise UserError(
            f"this machine's GPUs {gpus or [0]} are hardware '{local}', not '{hardware}': refusing to serve queue "
            f"'{hardware_queue(hardware)}'. Start the worker with --hardware {local}, or select other GPUs with --gpus"
        )
    if not os.environ.get("DAGSTER_HOME"):
        raise UserError(
            "DAGSTER_HOME is not set: a worker needs the platform's instance config (the fleet's dagster.yaml)"
        )
    try:
        preflight(require_postgres=True)
    except ServiceUnreachable as exc:
        raise UserError(str(exc)) from None
    cfg = worker_config_file(Path(os.environ["DAGSTER_HOME"]))
    worker_name = name or f"lem-{hardware}-{os.getpid()}"
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    cmd = [
        sys.executable,
        "-m",
        "dagster_celery.cli",
        "worker",
        "start",
        "-A",
        "dagster_celery.app",
        "-y",
        str(cfg),
        "-q",
        hardware_queue(hardware),
        "-n",
        worker_name,
        "--",
        f"--concurrency={concurrency}",
    ]
    print(
        f"worker for '{hardware}' (queue {hardware_queue(hardware)}, broker {urlparse(broker_url()).hostname}): "
        f"{' '.join(cmd)}",
        flush=True,
    )
    if not engine_server:
        return subprocess.call(cmd, env=env)
    from gpu_ops.serve import SERVER_ENV, ServerProcess

    own = Path(os.environ["DAGSTER_HOME"]) / "workers" / re.sub(r"[^A-Za-z0-9._-]", "_", worker_name)
    own.mkdir(parents=True, exist_ok=True)  # this worker's engine socket: never another worker's on this host
    server = ServerProcess(own / "engine.sock", Path(cache_dir) if cache_dir else None).start(env)
    print(f"engine server on {server.socket} (pid {server.proc.pid})", flush=True)
    try:
        return subprocess.call(cmd, env=dict(env, **{SERVER_ENV: str(server.socket)}))
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--hardware", required=True, help="hardware profile this worker serves; must match this machine's GPUs"
    )
    ap.add_argument("--gpus", default=None, help="comma-separated visible GPU indices (default 0)")
    ap.add_argument("--name", default=None, help="Celery worker name (default lem-<hardware>-<pid>)")
    ap.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="parallel steps; keep 1 per GPU set (a measurement needs the GPU alone)",
    )
    ap.add_argument("--cache-dir", default=None, help="engine caches (default: ~/.cache/llm-energy-measure/engine)")
    ap.add_argument(
        "--no-engine-server", action="store_true", help="measure in each run's own process (engines start cold)"
    )
    args = ap.parse_args(argv)
    from gpu_ops.errors import UserError

    try:
        return run_worker(
            args.hardware,
            [int(g) for g in args.gpus.split(",")] if args.gpus else None,
            args.name,
            args.concurrency,
            args.cache_dir,
            not args.no_engine_server,
        )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
