"""The site's data API (gpu_ops.site.api): schemas generated from gpu_ops/schema.py, row files confined to api/rows.
The API built from measured results is validated end to end in tests/energy_assets/assets/test_publish.py."""

import json

import jsonschema
import pandas as pd
import pytest

from gpu_ops import read_leaderboard
from gpu_ops.leaderboard import build_leaderboard
from gpu_ops.schema import LEADERBOARD, Column
from gpu_ops.site import build_site, row_id
from gpu_ops.site.api import ROW_ID, column_schema, json_schema, openapi, row_file


def test_the_schemas_are_the_column_schema():
    rows = json_schema("Leaderboard")["$defs"]["LeaderboardRow"]["properties"]
    for c in LEADERBOARD.columns:
        prop = rows[c.name]
        assert prop["description"] == c.meaning and prop.get("x-unit", "") == c.unit, c.name
    assert rows["j_per_token_mean"]["type"] == ["number", "null"]  # unmeasured: null, never 0
    assert rows["n_cycles"]["type"] == "integer" and rows["unstable"]["type"] == ["boolean", "null"]
    # a column defined in gpu_ops/schema.py is described by it
    assert column_schema(Column("idle_j", "float", "J", "energy while idle")) == {
        "type": ["number", "null"],
        "description": "energy while idle",
        "x-unit": "J",
    }
    assert column_schema(Column("samples", "list[float]", "W", "power samples"))["items"] == {"type": "number"}
    assert openapi("t")["components"]["schemas"]["LeaderboardRow"]["properties"] == rows


@pytest.mark.parametrize("bad", ["../../etc/passwd", "a/b", "..", "", "A", "x" * 101, "a\x00b", "ok.json", "-" * 101])
def test_a_row_file_never_leaves_api_rows(tmp_path, bad):
    with pytest.raises(ValueError, match="row id"):
        row_file(tmp_path / "api", bad)


def test_row_ids_of_hostile_keys_name_files_under_api_rows(tmp_path):
    for key, point in (("../../x|y", "a/../b"), ("x|" + "é" * 300, "\x00"), ("|", "")):
        rid = row_id(key, point)
        assert ROW_ID.fullmatch(rid) and row_file(tmp_path / "api", rid).parent == tmp_path / "api" / "rows"


def test_an_empty_leaderboard_publishes_a_valid_empty_api(tmp_path):
    site = build_site(build_leaderboard(pd.DataFrame()), {}, tmp_path / "site")
    api = site.folder / "api"
    board = json.loads((api / "leaderboard.json").read_text())
    jsonschema.Draft202012Validator(json.loads((api / "schema" / "leaderboard.schema.json").read_text())).validate(
        board
    )
    assert board["rows"] == [] and list((api / "rows").iterdir()) == []
    df = read_leaderboard(site.folder)
    assert df.empty and list(df.columns) == list(LEADERBOARD.names)
    # linked from the site: the index links the API page, which links each file
    assert 'href="api/index.html"' in (site.folder / "index.html").read_text()
    page = (api / "index.html").read_text()
    assert all(f'href="{f}"' in page for f in ("leaderboard.json", "openapi.json", "schema/row.schema.json"))
