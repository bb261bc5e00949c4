"""HuggingFace dataset export and publishing.

`hf_dataset_snapshot` writes the dataset folder (deterministic; see hf_export) after every leaderboard update
whose blocking checks passed. `hf_dataset_publish` commits it to the Hub in one atomic `create_commit`
against the head it read (`parent_commit`: a concurrent writer makes the commit fail instead of interleaving),
tags it `snapshot-<hash>`, and makes no commit when the Hub already holds the same files.

Modes (`LEM_HF_PUBLISH`): `off` (nothing), `dry-run` (default: the folder only, and what would be committed),
`on`. The token comes only from the HF_TOKEN environment variable (through `dg.EnvVar`) and is scrubbed from
any error text before it can reach a log, metadata or an exception.
"""

import logging
import os
import time
from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd

from energy_assets.assets.checks import require_checked_leaderboard
from energy_assets.assets.hf_export import CONFIGS, build_snapshot
from energy_assets.lineage import OWNERS
from energy_assets.resources import StorageResource
from gpu_ops.errors import excerpt
from gpu_ops.results import read_summary

SNAPSHOT_CODE_VERSION = "hf-snapshot-v1"
PARTITIONED = dg.AssetSelection.assets("raw_measurements", "cycle_statistics")
# the leaderboard's followers (this snapshot, the site): rebuilt after a leaderboard update whose blocking checks
# passed; the partitioned upstreams are ignored so a raw update does not rebuild them before the leaderboard has
AFTER_LEADERBOARD = dg.AutomationCondition.eager().ignore(
    PARTITIONED
) & dg.AutomationCondition.all_deps_blocking_checks_passed().ignore(PARTITIONED)
RAW_FOLDERS = dg.AssetIn(
    partition_mapping=dg.AllPartitionMapping(), metadata={"allow_missing_partitions": True, "as_folders": True}
)


class PublishError(Exception):
    """Publishing failed; the message never contains the token."""


class HuggingFaceHub(dg.ConfigurableResource):
    """Where snapshots go. `token` is set from `dg.EnvVar("HF_TOKEN")`, so the UI and run config show only the name."""

    repo_id: str = ""
    endpoint: str = "https://huggingface.co"
    private: bool = True
    mode: Literal["off", "dry-run", "on"] = "dry-run"
    token: str | None = None

    def _scrub(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    attempts: int = 4  # tries of one publish when the Hub answers 5xx/429, times out or drops the connection
    backoff_s: float = 2.0  # wait before the 2nd try, doubled before each further one (2, 4, 8 s)
    timeout_s: float = 60.0  # per HTTP request: a Hub that stops answering fails the try instead of hanging

    def _api(self):
        from huggingface_hub import HfApi, set_client_factory
        from huggingface_hub.utils._http import default_client_factory

        def client():
            c = default_client_factory()
            c.timeout = self.timeout_s
            return c

        set_client_factory(client)
        return HfApi(endpoint=self.endpoint, token=self.token or False)

    def remote_files(self, api, revision: str) -> dict[str, tuple[bool, str]]:
        """path -> (is LFS, content id): the sha256 of an LFS file's content, or the git blob sha1 of a regular file."""
        from huggingface_hub.hf_api import RepoFile

        out = {}
        for entry in api.list_repo_tree(self.repo_id, repo_type="dataset", recursive=True, revision=revision):
            if isinstance(entry, RepoFile):
                out[entry.path] = (True, entry.lfs.sha256) if entry.lfs else (False, entry.blob_id)
        return out

    def publish(self, folder: Path, content_hash: str) -> dict:
        """Commit `folder` as the dataset's whole content (one commit), tag it; returns what happened."""
        if not self.repo_id:
            raise PublishError("mode 'on' needs a repo id: set LEM_HF_REPO (e.g. my-org/llm-energy)")
        for attempt in range(1, self.attempts + 1):
            try:
                return self._publish(folder, content_hash)
            except PublishError:
                raise
            except Exception as exc:  # huggingface_hub / HTTP errors: scrub, re-raise without the chained traceback
                failure = f"{type(exc).__name__}: {excerpt(str(exc), bare=True)}"
                if not transient(exc) or attempt == self.attempts:
                    tries = f" after {attempt} tries" if attempt > 1 else ""
                    raise PublishError(
                        self._scrub(
                            f"publishing to {self.endpoint} {self.repo_id} failed{tries}: {failure}. Nothing is tagged "
                            "unless its whole commit landed; materialize hf_dataset_publish again to retry"
                        )
                    ) from None
                wait_s = self.backoff_s * 2 ** (attempt - 1)
                logging.getLogger(__name__).warning(
                    self._scrub(f"publish try {attempt} of {self.attempts} failed ({failure}); again in {wait_s:g} s")
                )
                sleep(wait_s)
        raise AssertionError("unreachable")

    def _publish(self, folder: Path, content_hash: str) -> dict:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        api = self._api()
        api.create_repo(self.repo_id, repo_type="dataset", private=self.private, exist_ok=True)
        head = api.repo_info(self.repo_id, repo_type="dataset").sha
        remote = self.remote_files(api, head)
        local = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        tag = f"snapshot-{content_hash[:16]}"
        changed = [rel for rel, p in local.items() if rel not in remote or not _same_content(p, *remote[rel])]
        stale = sorted(set(remote) - set(local) - {".gitattributes"})
        if not changed and not stale:  # also a retry after a commit whose answer was lost: its tag is made here
            self._tag(api, tag, head, content_hash)
            return {"committed": False, "reason": "the Hub already holds this snapshot", "commit": head, "tag": tag}
        ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(local[rel])) for rel in changed]
        ops += [CommitOperationDelete(path_in_repo=rel) for rel in stale]
        info = api.create_commit(
            self.repo_id,
            ops,
            commit_message=f"Snapshot {content_hash[:16]}",
            repo_type="dataset",
            parent_commit=head,
            commit_description=f"llm-energy-measure dataset snapshot, content hash {content_hash}",
        )
        self._tag(api, tag, info.oid, content_hash)  # only once the whole commit landed (create_commit is atomic)
        return {
            "committed": True,
            "commit": info.oid,
            "parent": head,
            "tag": tag,
            "files_changed": len(changed),
            "files_deleted": len(stale),
        }

    def _tag(self, api, tag: str, revision: str, content_hash: str) -> None:
        api.create_tag(
            self.repo_id,
            tag=tag,
            revision=revision,
            repo_type="dataset",
            exist_ok=True,
            tag_message=f"content hash {content_hash}",
        )


def transient(exc: Exception) -> bool:
    """An error a later try may not meet: a timeout, a dropped connection, a 5xx or 429 answer. A commit refused
    because another writer moved the head (412) is not: a person decides whose files the dataset keeps."""
    if isinstance(exc, (TimeoutError, ConnectionError)) or any(
        c.__name__ == "TransportError" and c.__module__.split(".")[0] in ("httpx", "httpx2") for c in type(exc).__mro__
    ):  # timeouts, refused or dropped connections, whichever HTTP client this huggingface_hub uses
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status is not None and (status >= 500 or status == 429)


def sleep(seconds: float) -> None:  # the backoff's wait (tests record it)
    time.sleep(seconds)


def _same_content(path: Path, lfs: bool, remote_id: str) -> bool:
    """Compare a local file with the Hub's id of it, hashing it the one way that id was made."""
    from huggingface_hub.utils.sha import git_hash

    from gpu_ops.results import file_sha256

    return (file_sha256(path) if lfs else git_hash(path.read_bytes())) == remote_id


def hub_from_env() -> HuggingFaceHub:
    """The resource as the environment configures it; the token only by EnvVar reference."""
    repo = os.environ.get("LEM_HF_REPO", "")
    return HuggingFaceHub(
        repo_id=repo,
        endpoint=os.environ.get("LEM_HF_ENDPOINT", "https://huggingface.co"),
        private=os.environ.get("LEM_HF_PRIVATE", "1") != "0",
        mode=os.environ.get("LEM_HF_PUBLISH", "on" if repo and os.environ.get("HF_TOKEN") else "dry-run"),
        token=dg.EnvVar("HF_TOKEN") if os.environ.get("HF_TOKEN") else None,
    )


def snapshot_folder(storage: StorageResource) -> Path:
    return storage.root / "hf_dataset"


def published_raw(context, raw_folders: dict[str, Path], leaderboard: pd.DataFrame) -> dict[str, Path]:
    """The raw result folders behind the leaderboard's rows, at the version those rows were computed from: a raw
    partition stored since (its statistics not rebuilt yet, or refused) is not published beside them."""
    versions = dict(zip(leaderboard.partition_key, leaderboard.raw_data_version)) if len(leaderboard) else {}
    kept = {p: f for p, f in raw_folders.items() if p in versions and read_summary(f)["content_hash"] == versions[p]}
    if len(kept) < len(raw_folders):
        context.log.warning(
            f"left out raw partitions without published statistics of their stored version: "
            f"{', '.join(sorted(set(raw_folders) - set(kept)))}"
        )
    return kept


@dg.asset(
    ins={
        "leaderboard": dg.AssetIn(),
        "cycle_statistics": dg.AssetIn(
            partition_mapping=dg.AllPartitionMapping(), metadata={"allow_missing_partitions": True}
        ),
        "raw_measurements": RAW_FOLDERS,
    },
    code_version=SNAPSHOT_CODE_VERSION,
    group_name="publish",
    kinds={"parquet", "huggingface"},
    automation_condition=AFTER_LEADERBOARD,
    owners=OWNERS,
    tags={"stage": "publish"},
    check_specs=[
        dg.AssetCheckSpec(
            "card_matches_files",
            asset="hf_dataset_snapshot",
            blocking=True,
            description="every config in the card's YAML has its data file, with the row count the metadata states",
        )
    ],
    description="The HuggingFace dataset folder: Parquet per table (experiments ... leaderboard, provenance) and a "
    "dataset card.",
)
def hf_dataset_snapshot(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    leaderboard: pd.DataFrame,
    cycle_statistics: pd.DataFrame,
    raw_measurements: dict,
):
    require_checked_leaderboard(context.instance)
    raw = published_raw(context, raw_measurements, leaderboard)
    snap = build_snapshot(raw, leaderboard, cycle_statistics, snapshot_folder(storage))
    context.log.info(f"dataset snapshot {snap.content_hash[:16]}: {len(snap.files)} files in {snap.folder}")
    yield dg.Output(
        None,
        data_version=dg.DataVersion(snap.content_hash),
        metadata={
            "content_hash": snap.content_hash,
            "folder": dg.MetadataValue.path(str(snap.folder)),
            "partitions": len(raw),
            "files": dg.MetadataValue.md(snap.metadata_table()),
            "total_bytes": sum(f.bytes for f in snap.files),
            **{
                f"rows_{f.path.removeprefix('data/').removesuffix('.parquet')}": f.rows
                for f in snap.files
                if f.rows is not None
            },
        },
    )
    yield _card_check(snap.folder, {f.path: f.rows for f in snap.files})


def _card_check(folder: Path, rows: dict[str, int | None]) -> dg.AssetCheckResult:
    import pyarrow.parquet as pq
    import yaml

    text = (folder / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    problems = []
    names = [c["config_name"] for c in header.get("configs", [])]
    if sorted(names) != sorted(CONFIGS):
        problems.append(f"configs {names} != tables {list(CONFIGS)}")
    for c in header.get("configs", []):
        for df in c["data_files"]:
            path = folder / df["path"]
            if not path.is_file():
                problems.append(f"{df['path']} missing")
            elif pq.ParquetFile(path).metadata.num_rows != rows.get(df["path"]):
                problems.append(f"{df['path']}: row count differs")
    return dg.AssetCheckResult(
        check_name="card_matches_files", passed=not problems, metadata={"problems": "; ".join(problems) or "none"}
    )


@dg.asset(
    deps=[hf_dataset_snapshot],
    group_name="publish",
    kinds={"huggingface"},
    automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    owners=OWNERS,
    tags={"stage": "publish"},
    description="Commits the snapshot to the HuggingFace Hub (one atomic commit + a tag); no commit when unchanged.",
)
def hf_dataset_publish(
    context: dg.AssetExecutionContext, storage: StorageResource, hf_hub: HuggingFaceHub
) -> dg.MaterializeResult:
    require_checked_leaderboard(context.instance)  # the snapshot on disk may predate a leaderboard that failed since
    folder = snapshot_folder(storage)
    record = context.instance.get_latest_materialization_event(dg.AssetKey("hf_dataset_snapshot"))
    content_hash = record.asset_materialization.metadata["content_hash"].value if record else None
    if content_hash is None or not (folder / "README.md").is_file():
        raise PublishError(f"no dataset snapshot in {folder}; materialize hf_dataset_snapshot first")
    base = {
        "mode": hf_hub.mode,
        "repo_id": hf_hub.repo_id or "(not set)",
        "endpoint": hf_hub.endpoint,
        "content_hash": content_hash,
    }
    if hf_hub.mode != "on":
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        context.log.info(f"publishing is {hf_hub.mode}: nothing sent to the Hub")
        return dg.MaterializeResult(
            metadata={
                **base,
                "committed": False,
                "reason": "publishing switched off"
                if hf_hub.mode == "off"
                else "dry run: folder written, nothing sent",
                "would_commit": dg.MetadataValue.json(files),
            }
        )
    result = hf_hub.publish(folder, content_hash)
    context.log.info(("committed " + result["commit"][:12]) if result["committed"] else "unchanged: no commit")
    return dg.MaterializeResult(metadata={**base, **result})
