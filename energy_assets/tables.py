"""The Dagster table schemas of the assets, built from gpu_ops.schema: the UI lists each column with its type, unit
and meaning."""

import math

import dagster as dg
import pandas as pd

from gpu_ops.schema import Table, View, plain

NULLABLE = ("str", "float", "int?", "bool?")


def table_schema(table: Table) -> dg.TableSchema:
    """Every column of `table`: its stored type, its meaning, its unit (tag `unit`) and, for a figure that ranks,
    which way is better (tag `better`)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                type=c.dtype,
                description=c.meaning,
                constraints=dg.TableColumnConstraints(nullable=c.dtype in NULLABLE),
                tags={k: v for k, v in (("unit", c.unit), ("better", c.better)) if v},
            )
            for c in table.columns
        ]
    )


def schema_metadata(main: Table, *others: Table) -> dict:
    """Definition metadata: `main` as the asset's column schema, each of `others` beside it as `<name>_columns`."""
    return {
        "dagster/column_schema": table_schema(main),
        **{f"{t.name}_columns": dg.MetadataValue.table_schema(table_schema(t)) for t in others},
    }


def significant(value, digits: int = 4):
    """A metadata number as a reader can judge it (0.4612, not 0.4611739049854989); None for a missing value."""
    v = plain(value)
    if not isinstance(v, float) or not v or not math.isfinite(v):
        return v
    return round(v, digits - 1 - math.floor(math.log10(abs(v))))


def rows_table(df: pd.DataFrame, view: View, n: int = 10) -> dg.MetadataValue:
    """The first `n` rows of `df` as a Dagster table of `view`'s columns, typed and described (with units) by its
    table."""
    schema = table_schema(Table(view.table.name, *view.columns))
    records = [
        dg.TableRecord({c: significant(v) for c, v in zip(view.names, row)})
        for row in df[list(view.names)].head(n).itertuples(index=False)
    ]
    return dg.MetadataValue.table(records, schema=schema)
