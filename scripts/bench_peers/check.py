"""Agreement: every engine's Silver and Gold rows against boxoffice's, as multisets of rows over
the columns the data defines (semantics.SILVER and semantics.GOLD), each cast to one type.

The comparison runs in an in-memory DuckDB (EXCEPT ALL both ways); it is a tool here, not one of
the engines measured."""

import glob
import os
from dataclasses import dataclass

import duckdb
from deltalake import DeltaTable

from semantics import GOLD, SILVER


@dataclass
class Verdict:
    """How one engine's table compares with boxoffice's."""

    layer: str
    table: str
    rows: int
    reference_rows: int
    # The first row (in sorted order) found on one side only, and which side.
    only_here: tuple = None
    only_reference: tuple = None

    @property
    def agrees(self) -> bool:
        return self.only_here is None and self.only_reference is None


def tables():
    """Every compared table: (layer, name, columns)."""
    for name, columns in SILVER.items():
        yield "silver", name, columns
    for name, columns in GOLD.items():
        yield "gold", name, columns


def canonical(columns) -> str:
    return ", ".join(f"{cast(name, kind)} AS {name}" for name, kind in columns)


def cast(name: str, kind: str) -> str:
    if kind == "SECONDS_TO_MICROS":
        return f"CAST(round({name} * 1e6) AS BIGINT)"
    return f"CAST({name} AS {kind})"


def load_delta(con, alias: str, path: str, columns) -> None:
    """A boxoffice Delta table (absent: no rows) as the view `alias`."""
    if os.path.isdir(os.path.join(path, "_delta_log")):
        data = DeltaTable(path).to_pyarrow_table(columns=[c for c, _ in columns])
        con.register(f"{alias}_arrow", data)
        con.execute(f"CREATE OR REPLACE VIEW {alias} AS SELECT {canonical(columns)} "
                    f"FROM {alias}_arrow")
    else:
        empty(con, alias, columns)


def load_parquet(con, alias: str, path: str, columns) -> None:
    """A peer's table, a folder of Parquet files (hive-partitioned or not), as `alias`."""
    files = sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
    if files:
        con.execute(f"CREATE OR REPLACE VIEW {alias} AS SELECT {canonical(columns)} FROM "
                    f"read_parquet({files!r}, hive_partitioning = true, union_by_name = true)")
    else:
        empty(con, alias, columns)


def empty(con, alias: str, columns) -> None:
    nulls = ", ".join(f"{cast('NULL', kind)} AS {name}" for name, kind in columns)
    con.execute(f"CREATE OR REPLACE VIEW {alias} AS SELECT {nulls} WHERE false")


def first_only_in(con, side: str, other: str):
    rows = con.execute(f"SELECT * FROM (SELECT * FROM {side} EXCEPT ALL SELECT * FROM {other}) "
                       "ORDER BY ALL LIMIT 1").fetchall()
    return rows[0] if rows else None


def compare(reference_lake: str, peer_out: str) -> list:
    """Compares a peer's outputs (`peer_out`/silver/<table>, `peer_out`/gold/<table>) with
    boxoffice's tables in `reference_lake`."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    verdicts = []
    for layer, name, columns in tables():
        load_delta(con, "reference", os.path.join(reference_lake, layer, name), columns)
        load_parquet(con, "here", os.path.join(peer_out, layer, name), columns)
        verdicts.append(Verdict(
            layer=layer,
            table=name,
            rows=con.execute("SELECT count(*) FROM here").fetchall()[0][0],
            reference_rows=con.execute("SELECT count(*) FROM reference").fetchall()[0][0],
            only_here=first_only_in(con, "here", "reference"),
            only_reference=first_only_in(con, "reference", "here"),
        ))
    return verdicts


def describe(columns, row) -> str:
    """A row as `column=value` pairs."""
    return ", ".join(f"{name}={value!r}" for (name, _), value in zip(columns, row))


def columns_of(layer: str, table: str):
    return (SILVER if layer == "silver" else GOLD)[table]
