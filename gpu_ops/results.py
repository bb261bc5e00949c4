"""Result folders: Parquet tables + summary.json, written atomically (temp folder, then rename).

A result folder is self-describing (schema version, resolved config, environment fingerprint) and is
exactly what the platform's results inbox accepts from a standalone CLI run.

A folder written by an earlier version is read as the current version (`upgrade`, the one place that knows what
older folders lack), so every other module sees one shape.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gpu_ops.config import MAX_SWEEP_POINTS, Parallelism
from gpu_ops.errors import UserError, excerpt
from gpu_ops.schema import RESULT_TABLES, Table

SCHEMA_VERSION = 1
TABLES = tuple(RESULT_TABLES)
# tables added after the first results were published: a folder written before them reads them as empty
LATER_TABLES = ("steps",)
FOLDER_FILES = frozenset({"summary.json", *(f"{name}.parquet" for name in TABLES)})
SIGNATURE_FILE = "signature.json"  # a submitter's signature (gpu_ops.signing): the one optional entry
MAX_SUMMARY_BYTES = 16 << 20
MAX_TABLE_BYTES = 2 << 30
MAX_JSON_DEPTH = 32  # summary.json nests 4 levels; json.loads recurses once per level
MAX_COLUMN_CHUNKS = 100_000  # row groups x columns in a Parquet footer, walked before anything is decoded
MAX_TABLE_ROWS = 10_000_000  # rows of one table (55 h of one GPU's 50 Hz power timeline)
MAX_ROW_GROUPS = 1_000  # row groups of one table (the writer puts up to 1M rows in each)
MAX_TABLE_BYTES_DECODED = 512 << 20  # Arrow bytes one table may decode to, every value and string included
# Arrow bytes per value of each Parquet physical type; a string's bytes are added once its dictionary is known
_VALUE_BYTES = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12, "BYTE_ARRAY": 4}
MIN_FREE_BYTES = 256 << 20  # room a result folder may need; LEM_MIN_FREE_MB overrides
_HEX = re.compile(r"[0-9a-f]+")

# An untrusted result folder's columns are checked against gpu_ops.schema: every column present since the first
# published folders must be there, none outside the schema may be, and each has its stored type. A column of nulls
# passes only where values may be missing.
_TYPE_NAMES = {
    "str": "text",
    "float": "a number",
    "int": "an integer",
    "int?": "an integer or empty",
    "bool": "true/false",
    "bool?": "true/false or empty",
    "list[float]": "a list of numbers",
}


@dataclass
class ResultTables:
    """The tables of a result folder (their columns: gpu_ops.schema.RESULT_TABLES) and its summary.json."""

    experiment: pd.DataFrame
    sweep_points: pd.DataFrame
    cycles: pd.DataFrame
    requests: pd.DataFrame
    windows: pd.DataFrame
    timeline: pd.DataFrame
    steps: pd.DataFrame = field(default_factory=pd.DataFrame)  # engine steps (continuous batching); empty otherwise
    summary: dict = field(default_factory=dict)
    added: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Columns the folder's version did not write, by table, that `upgrade` added empty: never stored, so a check
    does not compare them with their re-derivation (gpu_ops.rederive). Empty for a folder of this version."""

    def table(self, name: str) -> pd.DataFrame:
        """The table stored as `<name>.parquet`."""
        return getattr(self, name)

    @property
    def partition(self) -> tuple[str, str]:
        """(experiment key, hardware): the partition the result claims (checked against its config by validation)."""
        row = self.experiment.iloc[0]
        return str(row["experiment_key"]), str(row["hardware"])


@dataclass
class ResultFolder:
    """A result folder as written (`folder`) with its tables: passed on as it is, its files never encoded again."""

    folder: Path
    tables: ResultTables

    @property
    def content_hash(self) -> str:
        """The hash of the folder's files (summary.json's, computed on the bytes written)."""
        return self.tables.summary["content_hash"]

    @classmethod
    def read(cls, folder: Path) -> ResultFolder:
        """A result folder from disk, checked like every untrusted one (read_tables)."""
        return cls(Path(folder), read_tables(folder))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parquet_bytes(df: pd.DataFrame, small: bool = False) -> bytes:
    """Fixed writer options, so identical frames give identical bytes. `small` tables (one row per sweep point) skip
    compression and dictionaries: decoding them dominates when thousands are read at once, and they gain nothing
    from either."""
    buf = pa.BufferOutputStream()
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    if small:
        pq.write_table(table, buf, compression="none", use_dictionary=False, write_statistics=False)
    else:
        pq.write_table(table, buf, compression="zstd", use_dictionary=True, write_statistics=True)
    return buf.getvalue().to_pybytes()


def _serialised(tables: ResultTables) -> dict[str, tuple[bytes, dict]]:
    """Each table's Parquet bytes and its {rows, sha256} entry of summary.json."""
    out = {}
    for name in TABLES:
        data = parquet_bytes(tables.table(name))
        out[name] = (data, {"rows": len(tables.table(name)), "sha256": hashlib.sha256(data).hexdigest()})
    return out


def content_hash_of(files: dict[str, dict]) -> str:
    """The content hash of a result folder: a hash of its tables' {rows, sha256} entries in summary.json."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def write_tables(tables: ResultTables, folder: Path) -> str:
    """Write tables + summary into `folder` (which must not exist yet) atomically; returns the content hash."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        files = {}
        for name, (data, entry) in _serialised(tables).items():
            (tmp / f"{name}.parquet").write_bytes(data)
            files[name] = entry
        content_hash = content_hash_of(files)
        summary = dict(tables.summary, schema_version=SCHEMA_VERSION, tables=files, content_hash=content_hash)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tables.summary = summary
    return content_hash


def check_output_folder(out_root: Path) -> None:
    """Before measuring: the result's folder can be created and written and has room, so a measurement that took
    hours is not lost at its end to a typo, a read-only mount or a full disk."""
    out = Path(out_root)
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is not a folder; choose a folder for the results")
    try:
        fd, probe = tempfile.mkstemp(prefix=".lem-write-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(
            f"--out {out}: cannot write into {existing} ({exc.strerror or exc}); choose a writable folder"
        ) from None
    need = int(os.environ.get("LEM_MIN_FREE_MB", MIN_FREE_BYTES >> 20)) << 20
    free = shutil.disk_usage(existing).free
    if free < need:
        raise UserError(
            f"--out {out}: {free >> 20} MiB free on that disk, a result needs up to {need >> 20} MiB "
            "(LEM_MIN_FREE_MB); free some space or choose another folder"
        )


def recovery_roots() -> list[Path]:
    """Where a result goes when its own folder cannot be written: LEM_RECOVERY_DIR, else the temp folder, else home."""
    roots = [os.environ.get("LEM_RECOVERY_DIR"), tempfile.gettempdir(), Path.home()]
    return [Path(r) / "llm-energy-measure-recovered" for r in roots if r]


def save_result(tables: ResultTables, folder: Path) -> str:
    """write_tables for a finished measurement: if the folder cannot be written, the tables are written to a recovery
    folder and the error names it, so the measurement is never lost."""
    folder = Path(folder)
    try:
        return write_tables(tables, folder)
    except OSError as exc:
        cause = exc.strerror or str(exc)
    for root in recovery_roots():
        target = root / folder.name
        n = 1
        while target.exists():
            target, n = root / f"{folder.name}.{n}", n + 1
        try:
            write_tables(tables, target)
        except OSError:
            continue
        raise UserError(
            f"writing the result to {folder} failed ({cause}); the measured tables are safe in {target} "
            f"(a complete result folder): move it where it belongs, e.g. mv {target} {folder.parent}/"
        )
    raise UserError(
        f"writing the result to {folder} failed ({cause}), and so did every recovery folder "
        f"({', '.join(map(str, recovery_roots()))}); the measurement is lost: free space and re-run"
    )


def write_file_atomic(target: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one: write beside it, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def copy_folder(folder: Path, target: Path) -> None:
    """Put a copy of `folder`'s files at `target` (replaced atomically), byte for byte."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        for path in sorted(Path(folder).iterdir()):
            shutil.copyfile(path, tmp / path.name)
        replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_folder(tmp: Path, target: Path) -> None:
    """Put a fully written folder `tmp` at `target`, replacing what was there, with two renames (readers see the
    old folder or the new one, never a mix)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)


def _regular_file(path: Path, what: str) -> os.stat_result:
    """A file of an untrusted folder: a regular file, never a link (it could point anywhere) or a pipe or device
    (reading it would never end)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UserError(f"{what}: missing; copy the whole result folder") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(
            f"{what}: not a regular file (a link, folder, pipe or device); copy the result folder's files "
            "themselves (e.g. cp -rL)"
        )
    return st


def result_folders_in(folder: Path) -> list[Path]:
    """The result folders (a summary.json inside) directly in `folder`, e.g. the `results/` that `run` writes into."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir() or (folder / "summary.json").exists():
        return []
    return sorted(p for p in folder.iterdir() if not p.is_symlink() and (p / "summary.json").is_file())


def check_folder_entries(folder: Path) -> None:
    """A result folder holds exactly summary.json and the table files: anything else was not written by us."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        raise UserError(f"{folder}: no such folder; give a result folder written by `run` (it holds summary.json)")
    if folder.is_symlink() or not folder.is_dir():
        raise UserError(f"{folder}: not a folder (a link or a file); copy the result folder itself")
    inside = result_folders_in(folder)
    if inside:
        raise UserError(
            f"{folder}: a folder of {len(inside)} result folder(s), not one result; pass one of them, e.g. {inside[0]}"
        )
    extra = sorted(p.name for p in folder.iterdir() if p.name not in FOLDER_FILES | {SIGNATURE_FILE})
    if extra:
        raise UserError(
            f"{folder}: unexpected entries {excerpt(extra)}; a result folder holds only "
            f"{', '.join(sorted(FOLDER_FILES))}: remove the others"
        )


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """Deepest nesting of `[`/`{` outside strings, counted without recursion (json.loads recurses per level)."""
    skeleton = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8", "surrogatepass"), np.uint8)
    steps = np.isin(skeleton, (ord("["), ord("{"))).astype(np.int64) - np.isin(skeleton, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max()) if len(steps) else 0


def load_json(text: str, what: str, max_depth: int = MAX_JSON_DEPTH):
    """json.loads of untrusted text, its nesting bounded first."""
    if not isinstance(text, str):
        raise UserError(f"{what}: {type(text).__name__}, expected JSON text")
    depth = json_depth(text)
    if depth > max_depth:
        raise UserError(
            f"{what}: JSON nested {depth} levels deep, more than {max_depth}; not written by llm-energy-measure"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


def _table_entry(summary: dict, name: str, where: str) -> dict:
    entry = summary["tables"].get(name)
    if not isinstance(entry, dict):
        raise UserError(
            f"{where}: tables.{name} is missing; every table needs its rows and sha256 (checksums are "
            "required: copy the folder as llm-energy-measure wrote it)"
        )
    if not isinstance(entry.get("sha256"), str) or len(entry["sha256"]) != 64 or not _HEX.fullmatch(entry["sha256"]):
        raise UserError(
            f"{where}: tables.{name}.sha256 is {excerpt(entry.get('sha256'))}, expected 64 hex digits "
            "(checksums are required)"
        )
    if type(entry.get("rows")) is not int or entry["rows"] < 0:
        raise UserError(f"{where}: tables.{name}.rows is {excerpt(entry.get('rows'))}, expected a row count")
    return entry


def stored_tables(summary: dict) -> tuple[str, ...]:
    """The tables a folder holds: all of TABLES, less the LATER_TABLES a folder written before them lacks."""
    listed = summary.get("tables") if isinstance(summary.get("tables"), dict) else {}
    return tuple(n for n in TABLES if n not in LATER_TABLES or n in listed)


def read_summary(folder: Path) -> dict:
    """summary.json of a result folder (possibly from another machine: untrusted): size, nesting, version, checksums
    of every table and a content hash that matches them."""
    folder = Path(folder)
    summary_path = folder / "summary.json"
    where = f"{folder}/summary.json"
    if not summary_path.exists() and not summary_path.is_symlink():
        raise UserError(f"{folder}: no summary.json; not a result folder written by llm-energy-measure")
    if _regular_file(summary_path, where).st_size > MAX_SUMMARY_BYTES:
        raise UserError(f"{where}: larger than {MAX_SUMMARY_BYTES >> 20} MiB")
    try:
        text = summary_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{where}: not valid JSON (not UTF-8 at byte {exc.start})") from None
    summary = load_json(text, where)
    if not isinstance(summary, dict):
        raise UserError(
            f"{where}: a JSON {type(summary).__name__}, expected an object with schema_version, tables, ..."
        )
    if summary.get("schema_version") != SCHEMA_VERSION:
        raise UserError(
            f"{folder}: schema_version {excerpt(summary.get('schema_version'))}, expected "
            f"{SCHEMA_VERSION}; re-run with this version"
        )
    if not isinstance(summary.get("tables"), dict):
        raise UserError(
            f"{where}: tables is {excerpt(summary.get('tables'))}, expected an object listing each table's "
            "rows and sha256"
        )
    files = {
        name: {k: _table_entry(summary, name, where)[k] for k in ("rows", "sha256")} for name in stored_tables(summary)
    }
    claimed = summary.get("content_hash")
    if not isinstance(claimed, str) or not _HEX.fullmatch(claimed) or len(claimed) != 16:
        raise UserError(f"{where}: content_hash is {excerpt(claimed)}, expected 16 hex digits")
    if content_hash_of(files) != claimed:
        raise UserError(
            f"{where}: content_hash {claimed} does not match the table checksums "
            f"({content_hash_of(files)}); the folder was edited"
        )
    return summary


def _type_ok(dtype: str, t: pa.DataType) -> bool:
    """Whether an Arrow type stores a column of schema type `dtype` (as any version of llm-energy-measure wrote it)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        return dtype in ("str", "float", "int?", "bool?")  # every value missing: allowed where a value may be missing
    if dtype == "list[float]":
        return (pa.types.is_list(t) or pa.types.is_large_list(t)) and _type_ok("float", t.value_type)
    number = pa.types.is_integer(t) or pa.types.is_floating(t)
    return {
        "str": pa.types.is_string(t) or pa.types.is_large_string(t),
        "int": pa.types.is_integer(t),
        "float": number,
        "int?": number,
        "bool": pa.types.is_boolean(t),
        "bool?": pa.types.is_boolean(t),
    }[dtype]


def _footer_bytes(md: pq.FileMetaData) -> int:
    """The Arrow bytes a table decodes to, from its footer alone: each column chunk's values times their width (a
    60M-row table of repeated values is a 0.7 MB file and 1.2 GB decoded), or its uncompressed pages if larger.
    Strings count their offsets here; their characters are counted from the dictionaries (_string_bytes)."""
    total = 0
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        for c in range(md.num_columns):
            chunk = rg.column(c)
            width = _VALUE_BYTES.get(chunk.physical_type, 16)
            total += max(chunk.num_values * width, chunk.total_uncompressed_size)
    return total


def _too_large(where: str, rows: int, groups: int, decoded: int) -> UserError:
    return UserError(
        f"{where}: {rows} rows in {groups} row groups, {decoded >> 20} MiB once decoded; a result table holds at most "
        f"{MAX_TABLE_ROWS} rows in {MAX_ROW_GROUPS} row groups and {MAX_TABLE_BYTES_DECODED >> 20} MiB decoded "
        "(refused from its Parquet footer, nothing decoded): split the run into smaller experiments"
    )


def _check_metadata(pf: pq.ParquetFile, name: str, rows: int, where: str) -> None:
    """Bounds from the Parquet footer, before anything is decoded: a small file can decode to gigabytes."""
    md = pf.metadata
    if md.num_rows != rows:
        raise UserError(f"{where}: holds {md.num_rows} rows, summary.json says {rows}; the folder was edited")
    if name == "experiment" and md.num_rows != 1:
        raise UserError(f"{where}: must hold exactly one row, holds {md.num_rows}")
    if name == "sweep_points" and md.num_rows > MAX_SWEEP_POINTS:
        raise UserError(f"{where}: {md.num_rows} sweep points, at most {MAX_SWEEP_POINTS} allowed")
    if md.num_row_groups * md.num_columns > MAX_COLUMN_CHUNKS or md.num_row_groups > MAX_ROW_GROUPS:
        raise _too_large(where, md.num_rows, md.num_row_groups, 0)  # not walked: the footer itself is the bomb
    decoded = _footer_bytes(md)
    if md.num_rows > MAX_TABLE_ROWS or decoded > MAX_TABLE_BYTES_DECODED:
        raise _too_large(where, md.num_rows, md.num_row_groups, decoded)
    stored, table = pf.schema_arrow, RESULT_TABLES[name]
    missing = [c.name for c in table.columns if not c.optional and c.name not in stored.names]
    if missing:
        raise UserError(f"{where}: missing columns {missing}; not a result folder written by this version")
    unknown = [n for n in stored.names if table.describe(n) is None]
    if unknown:
        raise UserError(
            f"{where}: columns {excerpt(unknown)} are not columns llm-energy-measure writes "
            "(gpu_ops/schema.py); remove them"
        )
    for col in table.columns:
        if col.name in stored.names and not _type_ok(col.dtype, stored.field(col.name).type):
            raise UserError(
                f"{where}: column {col.name} is {stored.field(col.name).type}, expected "
                f"{_TYPE_NAMES[col.dtype]}; the table was not written by llm-energy-measure"
            )


def _value_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _string_bytes(table: pa.Table, columns: dict[str, pa.DataType]) -> int:
    """The characters of dictionary-encoded string columns once expanded: each index's value length, summed."""
    total = 0
    for col in columns:
        for chunk in table.column(col).chunks:
            if pa.types.is_dictionary(chunk.type):
                lengths = pc.binary_length(chunk.dictionary)
                total += pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
    return total


def read_arrow_table(folder: Path, name: str, summary: dict) -> pa.Table:
    """One table of a result folder as Arrow, after its file, checksum, footer bounds and column types are checked.
    `summary` is what read_summary returned. Number columns come back as float64."""
    folder = Path(folder)
    path = folder / f"{name}.parquet"
    where = f"{folder}/{name}.parquet"
    if _regular_file(path, where).st_size > MAX_TABLE_BYTES:
        raise UserError(f"{where}: larger than {MAX_TABLE_BYTES >> 30} GiB")
    entry = summary["tables"][name]
    if entry["sha256"] != file_sha256(path):
        raise UserError(f"{where}: checksum differs from summary.json; the folder is damaged or was edited")
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise UserError(f"{where}: unreadable Parquet ({excerpt(str(exc), bare=True)})") from None
    _check_metadata(pf, name, entry["rows"], where)
    strings = {f.name: t for f in pf.schema_arrow if _is_text(t := _value_type(f.type))}
    try:  # strings stay dictionary-encoded until their decoded size is known (a long string repeated is a bomb too)
        table = pq.ParquetFile(path, read_dictionary=list(strings)).read(use_threads=False)
    except Exception as exc:
        raise UserError(f"{where}: unreadable Parquet ({excerpt(str(exc), bare=True)})") from None
    decoded = _footer_bytes(pf.metadata) + _string_bytes(table, strings)
    if decoded > MAX_TABLE_BYTES_DECODED:
        raise _too_large(where, table.num_rows, pf.metadata.num_row_groups, decoded)
    for col, text in strings.items():
        i = table.column_names.index(col)
        table = table.set_column(i, col, pc.cast(table.column(i), text))
    for col in RESULT_TABLES[name].where(dtype="float"):
        if col.name in table.column_names:
            i = table.column_names.index(col.name)
            table = table.set_column(i, col.name, pc.cast(table.column(i), pa.float64()))
    return table


def read_tables(folder: Path) -> ResultTables:
    """Read and schema-check a result folder (possibly from another machine: untrusted), as the current version."""
    folder = Path(folder)
    check_folder_entries(folder)
    summary = read_summary(folder)
    frames = {name: read_arrow_table(folder, name, summary).to_pandas() for name in stored_tables(summary)}
    return upgrade(frames, summary, folder)


_ARROW = {
    "str": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "int?": pa.int64(),
    "bool": pa.bool_(),
    "bool?": pa.bool_(),
    "list[float]": pa.list_(pa.float64()),
}


def _missing(table: Table, names: list[str], rows: int) -> pd.DataFrame:
    """`names` of `table` with no value in any of `rows` rows, as a stored column of nulls reads back."""
    return pa.table({n: pa.nulls(rows, _ARROW[table[n].dtype]) for n in names}).to_pandas()


def upgrade(frames: dict[str, pd.DataFrame], summary: dict, folder: Path) -> ResultTables:
    """The tables of a result folder written by any earlier version, as this version writes them: the one place that
    knows what older folders lack, so every other module sees one shape. Applied after every check of the files (the
    checksums and the content hash are of the bytes as written; nothing here is written back).

    - a table added later (`steps`): empty, with its columns.
    - a column added later: empty in every row, in the table's column order; `added` names it (it was never stored,
      so it is not compared with its re-derivation).
    - cycles.parallelism, before it was recorded: the config's parallelism block, which every sweep point shared then.
    - summary.json's `experiment_hash`, before the three config hashes were named: its `config_hash`.
    - meter_json's `cross_check_rule`, before it was recorded: `sigma-v2` where the meter recorded a z, else `sqrt-v1`
      (gpu_ops.energy.tolerance); its `cross_check_edges`, before the tolerance had an edge term: false.
    """
    folder = Path(folder)
    added: dict[str, tuple[str, ...]] = {}
    for name, table in RESULT_TABLES.items():
        df = frames.get(name)
        if df is None:
            df = _missing(table, list(table.names), 0)
        missing = [n for n in table.names if n not in df.columns]
        if missing:
            added[name] = tuple(missing)
            df = pd.concat([df, _missing(table, missing, len(df)).set_axis(df.index)], axis=1)
            free = [c for c in df.columns if c not in table]  # sweep_points' backend_<key> columns stay after
            df = df[[*table.names, *free]]
        frames[name] = df
    cycles = frames["cycles"]
    if "parallelism" in added.get("cycles", ()) and len(cycles):
        config = load_json(frames["experiment"].config_json.iloc[0], f"{folder}/experiment.parquet: config_json")
        block = config.get("parallelism") if isinstance(config, dict) else None
        try:
            cycles["parallelism"] = Parallelism(**(block or {})).label
        except (TypeError, ValueError):
            raise UserError(
                f"{folder}/experiment.parquet: config_json.parallelism is {excerpt(block)}, "
                "expected {tensor:, pipeline:, data:}"
            ) from None
        added["cycles"] = tuple(n for n in added["cycles"] if n != "parallelism")  # recovered: stored in effect
    if "experiment_hash" not in summary and "config_hash" in summary:
        summary["experiment_hash"] = summary["config_hash"]
    experiment = frames["experiment"]
    meter = _json_object(experiment.meter_json.iloc[0]) if len(experiment) else None
    if meter is not None and "cross_check_rule" not in meter:  # summary.json's meter too: a check compares the two
        experiment.at[experiment.index[0], "meter_json"] = json.dumps(_upgraded_meter(meter))
    if isinstance(summary.get("meter"), dict):
        summary["meter"] = _upgraded_meter(summary["meter"])
    return ResultTables(**frames, summary=summary, added={k: v for k, v in added.items() if v})


def _upgraded_meter(meter: dict) -> dict:
    """The meter's set-up (meter_json) with the cross-check rule it was judged under, from before it was recorded."""
    if "cross_check_rule" in meter:
        return meter
    z = meter.get("cross_check_z")
    recorded_z = isinstance(z, (int, float)) and not isinstance(z, bool) and z > 0
    return {"cross_check_edges": False, **meter, "cross_check_rule": "sigma-v2" if recorded_z else "sqrt-v1"}


def _json_object(text) -> dict | None:
    """A JSON object's value; None for anything else, left as it is for the checks to report (gpu_ops.rederive)."""
    try:
        value = load_json(text, "experiment.meter_json")
    except UserError:
        return None
    return value if isinstance(value, dict) else None
