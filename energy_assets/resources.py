"""Resources: where the platform keeps its files, and which GPUs a measurement may use."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
from upath import UPath

from gpu_ops.config import ExperimentConfig
from gpu_ops.environment import SLUG_PATTERN, validate_slug
from gpu_ops.errors import UserError
from gpu_ops.results import parquet_bytes, write_file_atomic
from gpu_ops.schema import HISTORY

SAFE_NAME_MAX = 100


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """Text for a log, an event or a file, on one line: bytes of a non-UTF-8 file name (surrogates) and control
    characters (a newline in a folder name would cut a REASON.txt's first line) shown as escapes."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def safe_name(name: str) -> str:
    """A file name from an inbox as a name we may create: itself when it is a plain slug, else its allowed
    characters plus a hash of the original bytes (so two odd names never collide)."""
    if SLUG_PATTERN.fullmatch(name) and len(name) <= SAFE_NAME_MAX:
        return name
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    stem, ext = os.path.splitext(re.sub(r"[^A-Za-z0-9._-]+", "_", printable(name)))
    ext = ext if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", ext) else ""  # a file keeps its extension: x.yaml stays a YAML
    return f"{stem.strip('._-')[: SAFE_NAME_MAX - 20] or 'item'}-{digest}{ext}"


def _json(record: dict) -> bytes:
    return json.dumps(record, indent=1, sort_keys=True).encode()


def _sha(file_sha: str) -> str:
    """A file_sha (16 hex digits) as a file name, refused otherwise: it is never a path."""
    if not re.fullmatch(r"[0-9a-f]{16}", file_sha):
        raise UserError(f"file_sha {file_sha[:40]!r} is not 16 hex digits")
    return file_sha


def _content_hash(value: str) -> str:
    """A result folder's content hash (16 hex digits) as a file name, refused otherwise: it is never a path."""
    if not re.fullmatch(r"[0-9a-f]{16}", value):
        raise UserError(f"content_hash {value[:40]!r} is not 16 hex digits")
    return value


def default_storage() -> str:
    return os.environ.get("LEM_STORAGE", str(Path("var/storage").resolve()))


class StorageResource(dg.ConfigurableResource):
    """Folders of the platform (local by default; any fsspec URL for the asset IO).

    experiments/<experiment>/<hardware>.json  the config the inbox parsed and validated, resolved (every field), that
                   defines each partition (and .source: the inbox file it came from; .origin: who launched it and
                   when, as JSON), so one model/backend can be measured on 1 and on 2 GPUs with different files
    launches/<file_sha>.json  experiments launched from the Launchpad (submit_experiment): who, when, which run
    inbox/         experiment YAMLs dropped by people (experiment_inbox sensor)
    results_inbox/ result folders from standalone CLI runs (results_inbox sensor)
    submitters.yaml  the submitters' public keys (written by an administrator: `llm-energy-measure submitters`)
    pending/       signed uploads from registered submitters, waiting for a moderator (energy_assets.sensors.moderation)
    submissions/<name>.json  one record per signed upload: who, when, status (pending, approved, rejected)
    uploads/<experiment>/<hardware>/  approved result folders, ingested by raw_measurements
    quarantine/    refused or rejected result folders, each with REASON.txt
    work/          result folders being measured here (on this disk, so a refused one moves into quarantine/)
    """

    base_path: str = ""  # empty: $LEM_STORAGE, else ./var/storage

    @property
    def root(self) -> Path:
        return Path(self.base_path or default_storage())

    def _dir(self, name: str) -> Path:
        p = self.root / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def experiments_dir(self) -> Path:
        return self._dir("experiments")

    @property
    def inbox_dir(self) -> Path:
        return self._dir("inbox")

    @property
    def results_inbox_dir(self) -> Path:
        return self._dir("results_inbox")

    @property
    def uploads_dir(self) -> Path:
        return self._dir("uploads")

    @property
    def pending_dir(self) -> Path:
        return self._dir("pending")

    @property
    def submissions_dir(self) -> Path:
        return self._dir("submissions")

    @property
    def submitters_file(self) -> Path:
        return self.root / "submitters.yaml"

    def write_submission(self, record: dict) -> None:
        """Store a submission's record (atomically: the site and the sensor never read half of one), and index it by
        its content hash: the same tables under another folder name or from another submitter are one submission."""
        name = validate_slug(record["name"], "submission name")
        write_file_atomic(self.submissions_dir / f"{name}.json", json.dumps(record, indent=1, sort_keys=True).encode())
        write_file_atomic(self._content_index() / _content_hash(record["content_hash"]), name.encode())

    def _content_index(self) -> Path:
        """submissions/by_content/<content_hash>: the name of the submission holding those tables. Built from the
        records on first use (a storage from before the index)."""
        index = self.submissions_dir / "by_content"
        if not index.is_dir():
            tmp = self.submissions_dir / ".by_content.tmp"
            tmp.mkdir(exist_ok=True)
            for record in self.submissions():
                (tmp / _content_hash(record["content_hash"])).write_text(record["name"])
            with contextlib.suppress(OSError):  # a concurrent tick built it first
                os.rename(tmp, index)
            shutil.rmtree(tmp, ignore_errors=True)
        return index

    def submission_with_content(self, content_hash: str) -> dict | None:
        """The submission whose tables have this content hash, whatever its folder name or submitter (None: new)."""
        path = self._content_index() / _content_hash(content_hash)
        return self.submission(path.read_text()) if path.is_file() else None

    def submission(self, name: str) -> dict | None:
        path = self.submissions_dir / f"{validate_slug(name, 'submission name')}.json"
        return json.loads(path.read_bytes()) if path.is_file() else None

    def submissions(self) -> list[dict]:
        """Every submission's record, oldest first."""
        records = [json.loads(p.read_bytes()) for p in self.submissions_dir.glob("*.json")]
        return sorted(records, key=lambda r: (r["received_at"], r["name"]))

    @property
    def quarantine_dir(self) -> Path:
        return self._dir("quarantine")

    @property
    def work_dir(self) -> Path:
        return self._dir("work")

    def experiment_file(self, experiment: str, hardware: str) -> Path:
        folder = self.experiments_dir / validate_slug(experiment, "experiment")
        return folder / f"{validate_slug(hardware, 'hardware')}.json"

    def _source_file(self, experiment: str, hardware: str) -> Path:
        return self.experiment_file(experiment, hardware).with_suffix(".source")

    def register_experiment(
        self,
        experiment: str,
        hardware: str,
        config: ExperimentConfig,
        source: str | None = None,
        origin: dict | None = None,
    ) -> Path:
        """Atomically store a validated config as the definition of one partition (as JSON, so nobody parses its YAML
        again); `source` is the inbox file that owns it (None: registered directly, e.g. by a script); `origin` says
        who launched it and when (`<hardware>.origin`, JSON)."""
        target, owner = self.experiment_file(experiment, hardware), self._source_file(experiment, hardware)
        write_file_atomic(target, json.dumps(config.model_dump(mode="json"), indent=1, sort_keys=True).encode())
        for path, content in ((owner, source), (self._origin_file(experiment, hardware), origin)):
            if content is None:
                path.unlink(missing_ok=True)
            else:
                write_file_atomic(path, content.encode() if isinstance(content, str) else _json(content))
        return target

    def _origin_file(self, experiment: str, hardware: str) -> Path:
        return self.experiment_file(experiment, hardware).with_suffix(".origin")

    def experiment_origin(self, experiment: str, hardware: str) -> dict | None:
        """Who launched the partition's experiment and when (None: registered directly, or before this was kept)."""
        path = self._origin_file(experiment, hardware)
        return json.loads(path.read_bytes()) if path.is_file() else None

    @property
    def launches_dir(self) -> Path:
        return self._dir("launches")

    def write_launch(self, record: dict) -> None:
        """Record a Launchpad launch by the sha of the file it dropped into the inbox, for the inbox to register."""
        write_file_atomic(self.launches_dir / f"{_sha(record['file_sha'])}.json", _json(record))

    def launch(self, file_sha: str) -> dict | None:
        """The Launchpad launch that wrote the inbox file of this sha, if any."""
        path = self.launches_dir / f"{_sha(file_sha)}.json"
        return json.loads(path.read_bytes()) if path.is_file() else None

    def experiment_source(self, experiment: str, hardware: str) -> str | None:
        """The inbox file that defines the partition, if any."""
        path = self._source_file(experiment, hardware)
        return path.read_text() if path.is_file() else None

    def registered_experiments(self) -> list[tuple[str, str, Path]]:
        """(experiment, hardware, file) of every registered partition definition."""
        return [(p.parent.name, p.stem, p) for p in sorted(self.experiments_dir.glob("*/*.json"))]

    def load_experiment(self, experiment: str, hardware: str) -> ExperimentConfig:
        """The config registered for a partition, as the inbox validated it."""
        path = self.experiment_file(experiment, hardware)
        if not path.is_file():
            raise UserError(
                f"partition {experiment}|{hardware} has no registered experiment file ({path}); drop a YAML "
                f"for it into {self.inbox_dir} (its `hardware:` list or this machine's profile names the hardware)"
            )
        return ExperimentConfig.model_validate_json(path.read_bytes())

    def upload_dir(self, experiment: str, hardware: str) -> Path:
        return self.uploads_dir / validate_slug(experiment, "experiment") / validate_slug(hardware, "hardware")

    def latest_upload(self, experiment: str, hardware: str, name: str | None = None) -> Path | None:
        d = self.upload_dir(experiment, hardware)
        if name:
            validate_slug(name, "upload folder name (run tag lem/upload)")
            return d / name if (d / name / "summary.json").is_file() else None
        folders = sorted(p for p in d.glob("*") if (p / "summary.json").is_file()) if d.is_dir() else []
        return folders[-1] if folders else None

    def quarantine(self, item: Path, reason: str) -> Path:
        """Move a refused file or folder into quarantine/ under a safe name, with REASON.txt beside its contents."""
        dest = self.quarantine_dir / safe_name(item.name)
        n = 1
        while dest.exists() or dest.is_symlink():
            dest, n = self.quarantine_dir / f"{safe_name(item.name)}.{n}", n + 1
        if item.is_dir() and not item.is_symlink():
            os.rename(item, dest)
        else:  # a stray file, link or pipe goes into a folder of its own
            dest.mkdir()
            os.rename(item, dest / safe_name(item.name))
        note = dest / "REASON.txt"
        if note.is_dir() and not note.is_symlink():  # the upload brought its own: keep it, out of the way
            os.rename(note, dest / "REASON.txt.uploaded")
        write_file_atomic(note, (printable(reason) + "\n").encode())  # replaces a planted link, never writes through it
        return dest

    @property
    def history_dir(self) -> Path:
        """Every measurement of each partition's sweep points (gpu_ops.drift), one Parquet file per partition."""
        return self._dir("history")

    def history(self, partition: str) -> pd.DataFrame:
        """The stored history of one partition (schema.HISTORY); empty before its first statistics."""
        path = self.history_dir / f"{safe_name(partition)}.parquet"
        return pd.read_parquet(path) if path.is_file() else HISTORY.frame([])

    def write_history(self, partition: str, history: pd.DataFrame) -> None:
        write_file_atomic(self.history_dir / f"{safe_name(partition)}.parquet", parquet_bytes(history, small=True))

    def all_history(self) -> pd.DataFrame | None:
        """Every partition's history in one table (the site plots each row's)."""
        files = sorted(self.history_dir.glob("*.parquet"))
        return HISTORY.conform(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)) if files else None

    def io_base(self) -> UPath:
        return UPath(os.environ.get("LEM_IO_URL") or self.root / "assets")


class GpuResource(dg.ConfigurableResource):
    """Device selection for a measurement: which GPUs (CUDA_VISIBLE_DEVICES) this worker lends to a run.

    Exclusivity has two guards: the run queue (one run per hardware value, dagster.yaml) and the engine's
    own per-device flock (gpu_ops.locks), which also holds when the queue is misconfigured.
    """

    visible_devices: str | None = None  # e.g. "0", "GPU-uuid", "0,1"; None keeps the worker's environment
    engine_server: str | None = None  # socket of a warm engine server (gpu_ops.serve); None: $LEM_ENGINE_SERVER

    def server(self) -> str | None:
        """The engine server measurements go to: this resource's, else LEM_ENGINE_SERVER of the run's process (the
        worker or the local platform that started one sets it); None measures in the run's own process."""
        from gpu_ops.serve import SERVER_ENV

        return self.engine_server or os.environ.get(SERVER_ENV) or None

    @contextlib.contextmanager
    def selected(self):
        old = os.environ.get("CUDA_VISIBLE_DEVICES")
        if self.visible_devices is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = self.visible_devices
        try:
            yield
        finally:
            if self.visible_devices is not None:
                if old is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = old

    def local_profile(self, gpus: list[int]) -> str:
        """The hardware profile this worker would measure on for `gpus`."""
        from gpu_ops.energy import load_nvml, select_targets
        from gpu_ops.environment import hardware_profile

        with self.selected():
            nvml, _ = load_nvml()
            targets = select_targets(nvml, gpus) if nvml is not None and _cuda_usable() else []
            return hardware_profile(targets)


def _cuda_usable() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
