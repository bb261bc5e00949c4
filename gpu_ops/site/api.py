"""The site's data API: static JSON beside the pages, for programs that read the leaderboard.

    api/leaderboard.json                 every row (the leaderboard's columns, gpu_ops.schema.LEADERBOARD)
    api/rows/<id>.json                   one row with its provenance (Dagster links, hashes, resolved config,
                                         environment fingerprint) and its cycles
    api/schema/leaderboard.schema.json   JSON Schemas (draft 2020-12) of both, generated from gpu_ops/schema.py:
    api/schema/row.schema.json           each column's type, unit (`x-unit`) and meaning (`description`)
    api/openapi.json                     an OpenAPI 3.1 document of these static endpoints
    api/index.html                       the page that lists them (linked from every page of the site)

Values are as stored: SI units (seconds, joules, watts), and a value that was not measured is null, never 0. A row's
file is named by its id (gpu_ops.site.data.row_id), checked against an allow-list before it becomes a path.
`gpu_ops.read_leaderboard` reads leaderboard.json back into the leaderboard's typed frame.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from gpu_ops.results import ResultTables
from gpu_ops.schema import (
    CYCLES,
    FILE_SHA,
    LEADERBOARD,
    LEADERBOARD_PROVENANCE,
    SITE_HEADLINES,
    Column,
    Table,
    plain,
    plain_rows,
)
from gpu_ops.site.data import SiteData

API_VERSION = "1"
"""Changes when a document's shape changes (the leaderboard's columns are versioned by their schema)."""
DIALECT = "https://json-schema.org/draft/2020-12/schema"
ROW_ID = re.compile(r"[a-z0-9-]{1,100}")
"""What a row id may be before it names a file: gpu_ops.site.data.row_id makes ids of this shape."""
PROVENANCE = (*LEADERBOARD_PROVENANCE.columns, FILE_SHA)
_JSON_TYPE = {
    "str": "string",
    "float": "number",
    "int": "integer",
    "int?": "integer",
    "bool": "boolean",
    "bool?": "boolean",
    "list[float]": "array",
}
_NULLABLE = ("str", "float", "int?", "bool?")


def column_schema(c: Column) -> dict[str, Any]:
    """A column as a JSON Schema property: its type (null where a value may be missing: unmeasured, never 0), its
    meaning as the description and its unit as `x-unit`."""
    kind = _JSON_TYPE[c.dtype]
    prop: dict[str, Any] = {"type": [kind, "null"] if c.dtype in _NULLABLE or c.optional else kind}
    if c.dtype == "list[float]":
        prop["items"] = {"type": "number"}
    prop["description"] = c.meaning
    if c.unit:
        prop["x-unit"] = c.unit
    if c.better:
        prop["x-better"] = c.better
    return prop


def _object(properties: dict[str, dict], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _columns(columns: tuple[Column, ...] | Table) -> dict[str, dict]:
    return {c.name: column_schema(c) for c in (columns.columns if isinstance(columns, Table) else columns)}


def _link(description: str) -> dict[str, Any]:
    return {"type": ["string", "null"], "description": description}


def schemas(ref: str) -> dict[str, dict]:
    """The API's schemas by name; `ref` prefixes references between them (`#/$defs/` or `#/components/schemas/`)."""
    row_id = {"type": "string", "pattern": f"^{ROW_ID.pattern}$", "description": "the row's id: names its file"}
    row = _object(
        {
            "id": row_id,
            "href": {"type": "string", "description": "the row's file, relative to leaderboard.json"},
            **_columns(LEADERBOARD),
        },
        "One leaderboard row: a sweep point on a hardware profile (gpu_ops/schema.py LEADERBOARD).",
    )
    leaderboard = _object(
        {
            "api_version": {"const": API_VERSION},
            "title": {"type": "string"},
            "generated_from": {"type": "string", "description": "what built the site"},
            "headline": {
                "enum": list(SITE_HEADLINES.names),
                "description": "the column the site ranks by (higher is better)",
            },
            "rows": {"type": "array", "items": {"$ref": f"{ref}LeaderboardRow"}},
        },
        "api/leaderboard.json: every row of the leaderboard.",
    )
    provenance = _object(
        {
            **_columns(PROVENANCE),
            "run_url": _link("the Dagster run that measured the row (null without a Dagster UI or run)"),
            "raw_url": _link("the row's raw partition in the Dagster UI (null without a Dagster UI)"),
            "page": {"type": "string", "description": "the row's detail page, relative to this file"},
            "config": {
                "type": ["object", "null"],
                "description": "the sweep point's resolved experiment config (gpu_ops.config.ExperimentConfig; null "
                "without the raw tables)",
            },
            "environment": {
                "type": ["object", "null"],
                "description": "the environment fingerprint of the run (null without the raw tables)",
            },
        },
        "Where the row's numbers come from: the Dagster run and raw partition, the config and environment hashes.",
    )
    detail = _object(
        {
            "api_version": {"const": API_VERSION},
            "id": row_id,
            "row": {"$ref": f"{ref}LeaderboardRow"},
            "provenance": {"$ref": f"{ref}Provenance"},
            "cycles": {
                "type": "array",
                "items": {"$ref": f"{ref}Cycle"},
                "description": "the measured cycles the row's statistics summarise (empty without the raw tables)",
            },
        },
        "api/rows/<id>.json: one row with its provenance and its cycles.",
    )
    cycle = _object(_columns(CYCLES), "One measured cycle (gpu_ops/schema.py CYCLES).")
    return {"Leaderboard": leaderboard, "LeaderboardRow": row, "Row": detail, "Provenance": provenance, "Cycle": cycle}


def json_schema(root: str) -> dict[str, Any]:
    """A standalone JSON Schema document whose root is schema `root` (the others under $defs)."""
    defs = schemas("#/$defs/")
    return {"$schema": DIALECT, "$id": f"{root}.schema.json", **defs[root], "$defs": defs}


def openapi(title: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the static endpoints: each is a file, fetched with GET."""

    def get(op: str, summary: str, schema: dict, parameters: list | None = None, media="application/json") -> dict:
        ok = {"description": summary, "content": {media: {"schema": schema}}}
        return {
            "get": {"operationId": op, "summary": summary, "parameters": parameters or [], "responses": {"200": ok}}
        }

    row_param = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "a row's id (leaderboard.json: rows[].id)",
        "schema": {"type": "string", "pattern": f"^{ROW_ID.pattern}$"},
    }
    component = "#/components/schemas/"
    meta = ({"$ref": DIALECT}, None, "application/schema+json")
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": DIALECT,
        "info": {
            "title": f"{title}: data API",
            "version": API_VERSION,
            "description": "Static JSON files beside the site's pages. Values are in SI units as stored (seconds, "
            "joules, watts); a value that was not measured is null, never 0. Each column's unit is its `x-unit`.",
        },
        "servers": [{"url": "..", "description": "the site's root (this document is api/openapi.json)"}],
        "paths": {
            "/api/leaderboard.json": get(
                "getLeaderboard", "every leaderboard row", {"$ref": f"{component}Leaderboard"}
            ),
            "/api/rows/{id}.json": get(
                "getRow", "one row with its provenance and cycles", {"$ref": f"{component}Row"}, [row_param]
            ),
            "/api/schema/leaderboard.schema.json": get(
                "getLeaderboardSchema", "JSON Schema of leaderboard.json", *meta
            ),
            "/api/schema/row.schema.json": get("getRowSchema", "JSON Schema of a row's file", *meta),
        },
        "components": {"schemas": schemas(component)},
    }


def _dump(obj: Any) -> str:
    """JSON of plain values; NaN or infinity would be invalid JSON, and is refused rather than written."""
    return json.dumps(obj, indent=1, allow_nan=False, ensure_ascii=False) + "\n"


def row_file(api: Path, row_id: str) -> Path:
    """The file of a row, refused unless its id is on the allow-list and the path stays under `api`/rows."""
    if not ROW_ID.fullmatch(row_id):
        raise ValueError(f"row id {row_id[:40]!r} is not [a-z0-9-]: it would not name a file under api/rows")
    path = api / "rows" / f"{row_id}.json"
    if path.resolve().parent != (api / "rows").resolve():
        raise ValueError(f"row id {row_id!r} leaves api/rows")
    return path


def _provenance(row, t: ResultTables | None, run_url, raw_url) -> dict[str, Any]:
    out = {c.name: plain(getattr(row, c.name, None)) for c in PROVENANCE}
    out |= {"run_url": plain(run_url), "raw_url": plain(raw_url), "page": f"../../detail/{row.id}.html"}
    out["config"] = out["environment"] = None
    if t is not None:
        point = t.sweep_points[t.sweep_points.sweep_point == row.sweep_point]
        out["config"] = json.loads(point.config_json.iloc[0]) if len(point) else None
        out["environment"] = json.loads(t.experiment.fingerprint_json.iloc[0])
    return out


def _cycles(row, t: ResultTables | None) -> list[dict[str, Any]]:
    if t is None:
        return []
    mine = t.cycles[t.cycles.sweep_point == row.sweep_point].sort_values("cycle")
    return plain_rows(mine.reindex(columns=list(CYCLES.names)))


def write_api(folder: Path, data: SiteData, title: str, generated_from: str, headline: str) -> int:
    """Write api/ into the site folder being built; returns the number of row files."""
    api = folder / "api"
    (api / "rows").mkdir(parents=True)
    (api / "schema").mkdir()
    board = data.board.sort_values(["partition_key", "sweep_point"], kind="stable")
    rows = []
    for r in board.itertuples():
        values = {c: plain(getattr(r, c, None)) for c in LEADERBOARD.names}
        path = row_file(api, r.id)
        rows.append({"id": r.id, "href": f"rows/{path.name}", **values})
        t = data.tables.get(r.partition_key)
        detail = {
            "api_version": API_VERSION,
            "id": r.id,
            "row": rows[-1],
            "provenance": _provenance(r, t, r.run_url, r.raw_url),
            "cycles": _cycles(r, t),
        }
        path.write_text(_dump(detail), encoding="utf-8")
    index = {
        "api_version": API_VERSION,
        "title": title,
        "generated_from": generated_from,
        "headline": headline,
        "rows": rows,
    }
    (api / "leaderboard.json").write_text(_dump(index), encoding="utf-8")
    for name, root in (("leaderboard", "Leaderboard"), ("row", "Row")):
        (api / "schema" / f"{name}.schema.json").write_text(_dump(json_schema(root)), encoding="utf-8")
    (api / "openapi.json").write_text(_dump(openapi(title)), encoding="utf-8")
    return len(rows)


ENDPOINTS = (
    ("leaderboard.json", "every row of the leaderboard"),
    (
        "rows/{id}.json",
        "one row with its provenance (Dagster run, raw partition, hashes, resolved config, environment) "
        "and its cycles; each row's href names its file",
    ),
    ("schema/leaderboard.schema.json", "JSON Schema of leaderboard.json"),
    ("schema/row.schema.json", "JSON Schema of a row's file"),
    ("openapi.json", "OpenAPI 3.1 document of these endpoints"),
)


def api_body(title: str, n: int) -> str:
    """api/index.html: what the data API holds, and how to read it from Python."""
    items = "".join(
        f"<li><code>{html.escape(p)}</code>: {html.escape(what)}</li>"
        if "{" in p
        else f'<li><a href="{p}">{p}</a>: {html.escape(what)}</li>'
        for p, what in ENDPOINTS
    )
    return f"""<p><a href="../index.html">← leaderboard</a></p>
<h1>{html.escape(title)}: data API</h1>
<div class="sub">{n} rows as static JSON files. Values are in SI units as stored (seconds, joules, watts); a value that
was not measured is <code>null</code>, never 0. Each column's type, unit (<code>x-unit</code>) and meaning are in the
JSON Schemas, generated from the project's one column schema.</div>
<ul id="api-endpoints">{items}</ul>
<h2>From Python</h2>
<pre>from gpu_ops import read_leaderboard

df = read_leaderboard("https://example.org/site/")   # this site's URL or folder, or the HF dataset (repo id or folder)
</pre>"""
