"""`read_leaderboard`: the published leaderboard as a typed frame, from wherever it was published.

    from gpu_ops import read_leaderboard
    df = read_leaderboard("https://example.org/site/")   # a site (URL or folder): its api/leaderboard.json
    df = read_leaderboard("var/storage/hf_dataset")      # a HuggingFace dataset folder: data/leaderboard.parquet
    df = read_leaderboard("org/llm-energy")              # a dataset on the Hub (huggingface_hub; HF_TOKEN if private)

Each source gives the same frame: exactly the leaderboard's columns (gpu_ops.schema.LEADERBOARD) in their order and
stored types, values in SI units, and a value that was not measured missing (NaN / <NA>), never 0.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pandas as pd

from gpu_ops.errors import UserError
from gpu_ops.schema import LEADERBOARD

SITE_FILE = "api/leaderboard.json"
DATASET_FILE = "data/leaderboard.parquet"
MAX_JSON_BYTES = 256 << 20  # far above any leaderboard (10 000 rows are ~30 MB); a wrong URL is not read forever
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
TIMEOUT_S = 60


def read_leaderboard(src: str | Path, revision: str | None = None) -> pd.DataFrame:
    """The leaderboard from a site (http(s) URL or folder), a HuggingFace dataset folder, or a Hub dataset repo id
    (`revision`: a branch, tag or commit of the Hub repo; the latest when None)."""
    text = str(src)
    if text.startswith(("http://", "https://")):
        return _from_json(_download(f"{text.rstrip('/')}/{SITE_FILE}"), text)
    path = Path(text).expanduser()
    if (path / SITE_FILE).is_file():
        return _from_json((path / SITE_FILE).read_bytes(), text)
    if (path / DATASET_FILE).is_file():
        return typed(pd.read_parquet(path / DATASET_FILE))
    if not path.exists() and REPO_ID.fullmatch(text):
        try:
            from huggingface_hub import hf_hub_download
        except ImportError as e:
            raise UserError(
                f"{text}: reading a dataset from the Hub needs huggingface_hub; pip install 'llm-energy-measure[hub]'"
            ) from e

        return typed(pd.read_parquet(hf_hub_download(text, DATASET_FILE, repo_type="dataset", revision=revision)))
    raise UserError(
        f"{text}: not a site (a URL, or a folder with {SITE_FILE}), a dataset folder (with {DATASET_FILE}) or a "
        "dataset repo id on the Hub (org/name); give one of these"
    )


def typed(df: pd.DataFrame) -> pd.DataFrame:
    """`df` as the leaderboard: its columns in order, each of its stored type. Columns of other tables (a row's id and
    link) are left out; a missing one is an error naming it."""
    return LEADERBOARD.conform(df[[c for c in df.columns if c in LEADERBOARD]])


def _from_json(data: bytes, src: str) -> pd.DataFrame:
    try:
        rows = json.loads(data)["rows"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TypeError("its rows are not a list of objects")
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{src}: {SITE_FILE} is not the site's leaderboard ({exc}); check the URL or folder") from None
    return typed(pd.DataFrame(rows, columns=list(rows[0]) if rows else list(LEADERBOARD.names)))


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r:  # noqa: S310 (http(s) only, checked above)
            data = r.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise UserError(f"{url}: could not be read ({exc}); check the site's URL") from None
    if len(data) > MAX_JSON_BYTES:
        raise UserError(f"{url}: larger than {MAX_JSON_BYTES} bytes; not a leaderboard")
    return data
