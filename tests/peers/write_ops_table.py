"""Writes ops/raw_movie_bookings with another Delta writer (the deltalake Python package, not
boxoffice's code), change data feed on: the Snowflake sample's inserts, its updates, then one
cancellation and one delete. Usage: write_ops_table.py <lake root>"""
import sys
from datetime import datetime, timezone
from decimal import Decimal

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

path = f"{sys.argv[1]}/ops/raw_movie_bookings"
schema = pa.schema([
    pa.field("booking_id", pa.string(), nullable=False),
    pa.field("customer_id", pa.string()),
    pa.field("movie_id", pa.string()),
    pa.field("booking_date", pa.timestamp("us", tz="UTC")),
    pa.field("status", pa.string()),
    pa.field("ticket_count", pa.int32()),
    pa.field("ticket_price", pa.decimal128(10, 2)),
])
at = lambda minute: datetime(2024, 12, 29, 10, minute, tzinfo=timezone.utc)
rows = [
    ("B001", "C001", "M001", at(0), "BOOKED", 2, Decimal("15.00")),
    ("B002", "C002", "M002", at(10), "BOOKED", 1, Decimal("12.00")),
    ("B003", "C003", "M003", at(15), "BOOKED", 3, Decimal("20.00")),
    ("B004", "C004", "M004", at(20), "BOOKED", 4, Decimal("25.00")),
    ("B005", "C005", "M005", at(25), "BOOKED", 1, Decimal("10.00")),
    ("B006", "C006", "M005", at(30), "BOOKED", 2, Decimal("10.00")),
]
table = pa.Table.from_pylist([dict(zip(schema.names, r)) for r in rows], schema=schema)
write_deltalake(path, table, configuration={"delta.enableChangeDataFeed": "true"})
dt = DeltaTable(path)
dt.update(updates={"status": "'COMPLETED'"}, predicate="booking_id IN ('B001', 'B003')")
dt.update(updates={"ticket_count": "3"}, predicate="booking_id = 'B002'")
dt.update(updates={"status": "'CANCELLED'"}, predicate="booking_id = 'B004'")
dt.delete("booking_id = 'B006'")
print(DeltaTable(path).version())
