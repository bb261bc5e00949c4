"""Moderation of signed uploads: the results inbox puts a folder signed by a registered submitter into pending/; an
administrator approves or rejects it by launching the `moderate_submission` job from the Dagster UI (Launchpad) with

    ops: {decide: {config: {folder: <name in pending/>, decision: approve | reject, reason: "..."}}}

Approved folders move to uploads/ and the results inbox requests their ingestion on its next tick; rejected ones move
to quarantine/ with the reason. Nothing in pending/ reaches raw measurements, statistics or the leaderboard.
"""

import datetime
import os
from pathlib import Path

import dagster as dg

from energy_assets.resources import StorageResource, printable
from gpu_ops.environment import validate_slug
from gpu_ops.errors import UserError
from gpu_ops.results import read_tables
from gpu_ops.signing import KeyRegistry, verify_folder

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
DECISIONS = {"approve": APPROVED, "reject": REJECTED}


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def hold_for_moderation(
    storage: StorageResource, entry: Path, name: str, partition: tuple[str, str], signature: dict, experiment_hash: str
) -> dict | None:
    """Move a verified upload into pending/ and record who sent it and when. Tables submitted before, under any
    folder name and by any submitter, are not a new submission: the copy goes to quarantine/ with a reason naming
    the earlier one, whose record is returned (None: this one is new)."""
    earlier = storage.submission_with_content(signature["content_hash"]) or storage.submission(name)
    if earlier is not None:
        storage.quarantine(entry, duplicate_reason(earlier))
        return earlier
    os.rename(entry, storage.pending_dir / name)
    storage.write_submission(
        {
            "name": name,
            "submitter": signature["submitter"],
            "key_fingerprint": signature["key_fingerprint"],
            "experiment": partition[0],
            "hardware": partition[1],
            "content_hash": signature["content_hash"],
            "experiment_hash": experiment_hash,
            "signed_at": signature["signed_at"],
            "received_at": now_utc(),
            "status": PENDING,
            "decided_at": None,
            "reason": None,
        }
    )
    return None


def duplicate_reason(earlier: dict) -> str:
    return (
        f"duplicate: the same result (content hash {earlier['content_hash']}) was submitted before as "
        f"{earlier['name']} by {earlier['submitter']} at {earlier['received_at']} ({earlier['status']}); "
        "nothing to do, or submit a new measurement"
    )


class ModerationDecision(dg.Config):
    """One pending submission and what the administrator decided about it."""

    folder: str  # its name under pending/ (the submissions page and the inbox sensor's log show it)
    decision: str  # approve | reject
    reason: str = ""  # required to reject: it is kept with the folder in quarantine/ and shown on the site


def _check(config: ModerationDecision, storage: StorageResource) -> dict:
    """The pending record the decision is about, or a refusal naming the field and the fix."""
    if config.decision not in DECISIONS:
        raise UserError(f"decision {config.decision!r} is not one of approve, reject")
    if config.decision == "reject" and not config.reason.strip():
        raise UserError("reason is empty: say why the submission is rejected (the submitter sees it)")
    name = validate_slug(config.folder, "folder")
    record = storage.submission(name)
    if record is None or not (storage.pending_dir / name).is_dir():
        pending = sorted(p.name for p in storage.pending_dir.iterdir())[:10]
        raise UserError(f"folder {name!r} is not pending moderation; pending now: {pending or 'none'}")
    if record["status"] != PENDING:
        raise UserError(f"folder {name!r} was already {record['status']} at {record['decided_at']}")
    return record


@dg.op(description="Approve a pending signed upload (it is ingested next) or reject it (it goes to quarantine/).")
def decide(context: dg.OpExecutionContext, config: ModerationDecision, storage: StorageResource) -> None:
    record = _check(config, storage)
    folder = storage.pending_dir / record["name"]
    if config.decision == "approve":
        # re-checked: the key may have been revoked, or the folder edited, since the upload
        content_hash = read_tables(folder).summary["content_hash"]
        verify_folder(folder, content_hash, KeyRegistry.load(storage.submitters_file))
        dest = storage.upload_dir(record["experiment"], record["hardware"]) / record["name"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder, dest)
    else:
        storage.quarantine(folder, f"rejected by a moderator: {printable(config.reason)}")
    record.update(status=DECISIONS[config.decision], decided_at=now_utc(), reason=printable(config.reason) or None)
    storage.write_submission(record)
    context.log.info(f"submission {record['name']} from {record['submitter']}: {record['status']}")


@dg.job(
    name="moderate_submission",
    description="An administrator's decision on one signed upload waiting in pending/: approve or reject (with a "
    "reason). See docs/operations.md.",
)
def moderate_job():
    decide()


def approved_not_requested(storage: StorageResource, requested: set[str]) -> list[dict]:
    """Approved submissions whose ingestion the results inbox has not requested yet."""
    return [r for r in storage.submissions() if r["status"] == APPROVED and r["name"] not in requested]
