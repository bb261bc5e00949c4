"""The Dagster table schemas of the assets, built from gpu_ops.schema: the UI lists each column with its type, unit
and meaning."""

import dagster as dg

from gpu_ops.schema import Table

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
