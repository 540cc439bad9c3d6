"""One measured stage of one peer engine, run as its own process by the driver so that its wall
time, CPU seconds and peak memory are that process's alone.

    run_engine.py ENGINE silver BRONZE_LAKE OUT_DIR
    run_engine.py ENGINE gold SILVER_DIR OUT_DIR

Prints one line of JSON: the rows written per table."""

import json
import sys


def bronze_files(lake: str) -> dict:
    """The Parquet files of the Bronze tables' current Delta snapshots."""
    from deltalake import DeltaTable

    return {table: DeltaTable(f"{lake}/bronze/{table}").file_uris()
            for table in ("bookings_raw", "payments_raw")}


def main(argv: list) -> int:
    engine, stage, source, out = argv
    if engine == "duckdb":
        import duckdb_engine as module
    elif engine == "polars":
        import polars_engine as module
    elif engine == "spark":
        import spark_engine as module
    else:
        print(f"unknown engine {engine}", file=sys.stderr)
        return 2
    if stage == "silver":
        counts = module.silver(bronze_files(source), out)
    else:
        counts = module.gold(source, out)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
