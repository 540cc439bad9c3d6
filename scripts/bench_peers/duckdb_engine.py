"""The bookings_fact job and the Gold rebuild in DuckDB SQL, set-based throughout.

Silver reads the Bronze Delta tables' Parquet files (listed by the `deltalake` package: DuckDB's
delta extension would be downloaded at run time) and writes Parquet partitioned as boxoffice
partitions its tables; Gold reads that Silver and writes one Parquet file per table. How the
join's row-by-row rules become window functions is explained in docs/benchmark-peers.md."""

import os

import duckdb

from gold_sql import GOLD
from semantics import BOOKINGS, DEDUP_HORIZON, LATENESS, MAX_FUTURE, PAYMENTS, WINDOW, PARTITIONS

BOOKING_JSON = """{
    "schema_version": "INTEGER", "order_id": "VARCHAR", "booking_time": "VARCHAR",
    "customer": {"customer_id": "VARCHAR", "name": "VARCHAR", "email": "VARCHAR"},
    "event_details": {"event_id": "VARCHAR", "event_name": "VARCHAR",
                      "event_location": "VARCHAR", "city": "VARCHAR",
                      "seats": [{"seat_number": "VARCHAR", "price": "DOUBLE"}]},
    "channel": "VARCHAR", "currency": "VARCHAR"}"""

PAYMENT_JSON = """{
    "schema_version": "INTEGER", "payment_id": "VARCHAR", "order_id": "VARCHAR",
    "payment_time": "VARCHAR", "amount": "DOUBLE", "payment_method": "VARCHAR",
    "payment_status": "VARCHAR", "currency": "VARCHAR", "fee": "DOUBLE"}"""

def parsed(table: str, hub: int, fields: str, parameter: str, columns: str) -> str:
    """Each event of a Bronze table parsed (`columns` of its JSON `j`), once per (partition,
    sequence), with its arrival: the partition's enqueued times made non-decreasing by sequence
    number. Bodies are not kept: a late event's is read again."""
    return f"""
CREATE TEMP TABLE {table} AS
WITH raw AS (
    SELECT partition_id, sequence_number, epoch_us(enqueued_time) AS enqueued, event_uid,
           json_transform(body, '{fields}') AS j
    FROM read_parquet(${parameter}) WHERE event_uid IS NOT NULL
), ordered AS (
    SELECT *, max(enqueued) OVER partition AS arrival,
           lag(sequence_number) OVER partition AS previous
    FROM raw
    WINDOW partition AS (PARTITION BY partition_id ORDER BY sequence_number
                         ROWS UNBOUNDED PRECEDING)
)
SELECT {hub}::UTINYINT AS hub, partition_id, sequence_number, arrival, event_uid, {columns},
       coalesce(j.schema_version, 0) AS schema_version
FROM ordered WHERE previous IS DISTINCT FROM sequence_number
"""


# Times are converted to UTC microseconds; v0 events have no schema_version.
PARSED = [
    parsed("bookings", BOOKINGS, BOOKING_JSON, "bookings", """
       j.order_id, epoch_us(CAST(j.booking_time AS TIMESTAMPTZ)) AS t,
       j.customer.customer_id, j.customer.name AS customer_name,
       j.customer.email AS customer_email, j.event_details.event_id,
       j.event_details.event_name, j.event_details.event_location, j.event_details.city,
       j.event_details.seats, j.channel, j.currency"""),
    parsed("payments", PAYMENTS, PAYMENT_JSON, "payments", """
       j.payment_id, j.order_id, epoch_us(CAST(j.payment_time AS TIMESTAMPTZ)) AS t, j.amount,
       j.payment_method, j.payment_status, j.currency, j.fee"""),
]

# Each event's fate in arrival order. The watermark before an event is the smaller of the two
# streams' running maxima over earlier events, minus the lateness. Only an event's first
# occurrence can raise a maximum (a duplicate carries the same time; a late event's time is
# below the watermark already), and only when it is not more than max_future ahead of its arrival.
FATES = f"""
CREATE TEMP TABLE fates AS
WITH stream AS (
    SELECT hub, partition_id, sequence_number, arrival, event_uid, t FROM bookings
    UNION ALL
    SELECT hub, partition_id, sequence_number, arrival, event_uid, t FROM payments
), ranked AS (
    SELECT *, row_number() OVER (ORDER BY arrival, hub, partition_id, sequence_number) AS rank
    FROM stream
), first AS (
    SELECT *, rank = min(rank) OVER uid AS first_seen, arg_min(t, rank) OVER uid AS first_time
    FROM ranked WINDOW uid AS (PARTITION BY event_uid)
), marked AS (
    SELECT *,
        max(CASE WHEN hub = {BOOKINGS} AND first_seen AND t <= arrival + {MAX_FUTURE} THEN t END)
            OVER earlier AS max_booking,
        max(CASE WHEN hub = {PAYMENTS} AND first_seen AND t <= arrival + {MAX_FUTURE} THEN t END)
            OVER earlier AS max_payment
    FROM first
    WINDOW earlier AS (ORDER BY rank ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), watermarked AS (
    SELECT *, CASE WHEN max_booking IS NOT NULL AND max_payment IS NOT NULL
                   THEN least(max_booking, max_payment) - {LATENESS} END AS watermark
    FROM marked
)
SELECT hub, partition_id, sequence_number, rank, watermark,
       CASE WHEN NOT first_seen AND (watermark IS NULL OR watermark <= first_time + {DEDUP_HORIZON})
                THEN 'duplicate'
            WHEN t < watermark THEN 'late'
            ELSE 'accepted' END AS fate
FROM watermarked
"""

# Every pair of accepted events on one order within the window matches (nothing that could
# still match is ever evicted). The match is made when the later of the two arrives, so a
# booking's matches come in its payments' arrival order and a payment's in its bookings'.
MATCHES = f"""
CREATE TEMP TABLE accepted_bookings AS
SELECT b.*, f.rank FROM bookings b JOIN fates f USING (hub, partition_id, sequence_number)
WHERE f.fate = 'accepted';
DROP TABLE bookings;

CREATE TEMP TABLE accepted_payments AS
SELECT p.*, f.rank FROM payments p JOIN fates f USING (hub, partition_id, sequence_number)
WHERE f.fate = 'accepted';
DROP TABLE payments;

CREATE TEMP TABLE matches AS
WITH pairs AS (
    SELECT b.rank AS b_rank, p.rank AS p_rank, p.payment_status = 'Success' AS success
    FROM accepted_bookings b JOIN accepted_payments p
      ON p.order_id = b.order_id AND p.t - b.t BETWEEN 0 AND {WINDOW}
)
SELECT b_rank, p_rank,
       p_rank = min(p_rank) OVER (PARTITION BY b_rank) AS is_first_booking_match,
       b_rank = min(b_rank) OVER (PARTITION BY p_rank) AS is_first_payment_match,
       success AND p_rank = min(CASE WHEN success THEN p_rank END) OVER (PARTITION BY b_rank)
           AS is_sale
FROM pairs
"""


def category(name: str) -> str:
    """Category by the first substring match, ignoring case (jobs/src/silver/derive.rs)."""
    return f"""CASE WHEN {name} ILIKE '%concert%' THEN 'Music'
            WHEN {name} ILIKE '%play%' THEN 'Theater'
            WHEN {name} ILIKE '%movie%' THEN 'Cinema'
            ELSE 'Other' END AS event_category"""


def day_and_hour(micros: str) -> str:
    """The English day name and hour of a UTC time."""
    return f"""dayname(make_timestamp({micros})) AS booking_day_of_week,
           hour(make_timestamp({micros}))::INTEGER AS booking_hour"""


PAYMENT_TYPE = """CASE WHEN payment_method IN ('Credit Card', 'Debit Card') THEN 'Card'
            WHEN payment_method = 'PayPal' THEN 'Online' ELSE 'Cash' END AS payment_type"""

FACT = f"""
WITH joined AS (
    SELECT b.order_id, b.t AS b_t, b.customer_id, b.customer_name, b.customer_email, b.event_id,
           b.event_name, b.event_location, b.seats, b.arrival AS b_arrival, b.currency AS b_currency,
           b.channel, b.city, b.schema_version, b.event_uid AS booking_event_uid,
           p.payment_id, p.t AS p_t, p.amount, p.payment_method, p.arrival AS p_arrival,
           p.payment_status, p.currency AS p_currency, p.event_uid AS payment_event_uid,
           m.is_first_booking_match, m.is_first_payment_match, m.is_sale
    FROM matches m
    JOIN accepted_bookings b ON b.rank = m.b_rank
    JOIN accepted_payments p ON p.rank = m.p_rank
), seated AS (
    SELECT * EXCLUDE (seats), unnest(seats) AS seat FROM joined
)
SELECT order_id, make_timestamptz(b_t) AS booking_time, customer_id, customer_name,
       customer_email, event_id, event_name, event_location, seat.seat_number,
       seat.price AS seat_price, {category("event_name")}, {day_and_hour("b_t")},
       payment_id, make_timestamptz(p_t) AS payment_time, amount, payment_method,
       {PAYMENT_TYPE}, make_timestamptz(b_arrival) AS booking_event_time,
       make_timestamptz(p_arrival) AS payment_event_time, payment_status,
       coalesce(p_currency, b_currency) AS currency, channel, city, schema_version,
       'stream' AS source, booking_event_uid, payment_event_uid, is_first_booking_match,
       is_first_payment_match, is_sale, current_timestamp AS processed_at,
       CAST(make_timestamp(b_t) AS DATE) AS booking_date
FROM seated
-- The expectations whose action is drop (mod.rs: declared_expectations).
WHERE seat.price > 0 AND amount >= 0 AND b_t - b_arrival <= {MAX_FUTURE}
"""

UNPAID = f"""
SELECT b.order_id, make_timestamptz(b.t) AS booking_time, b.customer_id, b.customer_name,
       b.customer_email, b.event_id, b.event_name, {category("b.event_name")},
       len(b.seats)::INTEGER AS seats,
       array_to_string(list_transform(b.seats, lambda s: s.seat_number), ',') AS seat_numbers,
       list_reduce(list_transform(b.seats, lambda s: s.price), lambda a, x: a + x) AS total_price,
       {day_and_hour("b.t")},
       make_timestamptz(b.arrival) AS booking_event_time, b.channel, b.city, b.currency,
       b.schema_version, b.event_uid AS booking_event_uid, current_timestamp AS processed_at,
       CAST(make_timestamp(b.t) AS DATE) AS booking_date
FROM accepted_bookings b ANTI JOIN matches m ON m.b_rank = b.rank
"""

ORPHANS = f"""
SELECT p.payment_id, p.order_id, make_timestamptz(p.t) AS payment_time, p.amount,
       p.payment_method, {PAYMENT_TYPE}, p.payment_status, p.currency, p.fee,
       make_timestamptz(p.arrival) AS payment_event_time, p.schema_version,
       p.event_uid AS payment_event_uid, current_timestamp AS processed_at,
       CAST(make_timestamp(p.t) AS DATE) AS payment_date
FROM accepted_payments p ANTI JOIN matches m ON m.p_rank = p.rank
"""

LATE = f"""
WITH late AS (
    SELECT f.hub, f.partition_id, f.sequence_number, f.watermark, e.event_uid, e.order_id, e.t,
           e.arrival
    FROM fates f JOIN (
        SELECT hub, partition_id, sequence_number, event_uid, order_id, t, arrival FROM bookings
        UNION ALL
        SELECT hub, partition_id, sequence_number, event_uid, order_id, t, arrival FROM payments
    ) e USING (hub, partition_id, sequence_number)
    WHERE f.fate = 'late'
), bodies AS (
    SELECT DISTINCT ON (hub, partition_id, sequence_number) hub, partition_id, sequence_number,
           body
    FROM (SELECT {BOOKINGS}::UTINYINT AS hub, partition_id, sequence_number, body
          FROM read_parquet($bookings)
          UNION ALL
          SELECT {PAYMENTS}::UTINYINT, partition_id, sequence_number, body
          FROM read_parquet($payments))
    SEMI JOIN late USING (hub, partition_id, sequence_number)
)
SELECT CASE WHEN hub = {BOOKINGS} THEN 'bookings' ELSE 'payments' END AS hub, event_uid,
       order_id, make_timestamptz(t) AS event_time, make_timestamptz(arrival) AS arrival_time,
       make_timestamptz(watermark) AS watermark,
       (watermark - t) / 1e6 AS behind_seconds, partition_id, sequence_number, body,
       current_timestamp AS processed_at, CAST(NULL AS BIGINT) AS backfill
FROM late JOIN bodies USING (hub, partition_id, sequence_number)
"""


def silver(bronze_files: dict, out: str) -> dict:
    """Runs the join over Bronze and writes the four Silver tables under `out`."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    files = {"bookings": bronze_files["bookings_raw"], "payments": bronze_files["payments_raw"]}
    con.execute(PARSED[0], {"bookings": files["bookings"]})
    con.execute(PARSED[1], {"payments": files["payments"]})
    con.execute(FATES)
    # Late events first: once they are written, only the accepted events are kept.
    counts = {"late_events": write(con, LATE, f"{out}/late_events", None, files)}
    con.execute(MATCHES)
    for table, query in (("bookings_fact", FACT), ("unpaid_bookings", UNPAID),
                         ("orphan_payments", ORPHANS)):
        counts[table] = write(con, query, f"{out}/{table}", PARTITIONS[table])
    return counts


def write(con, query: str, path: str, partition, parameters=None) -> int:
    """Writes `query`'s rows as Parquet at `path` (a folder of hive partitions when
    partitioned), returning how many."""
    os.makedirs(path, exist_ok=True)
    if partition:
        target = f"'{path}' (FORMAT parquet, PARTITION_BY ({partition}), OVERWRITE_OR_IGNORE)"
    else:
        target = f"'{path}/part-0.parquet' (FORMAT parquet)"
    return con.execute(f"COPY ({query}) TO {target}", parameters).fetchall()[0][0]


def gold(silver_dir: str, out: str) -> dict:
    """Rebuilds the five Gold tables from the Silver tables under `silver_dir`."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, table in (("fact", "bookings_fact"), ("unpaid", "unpaid_bookings"),
                        ("orphans", "orphan_payments")):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM "
                    f"read_parquet('{silver_dir}/{table}/**/*.parquet', hive_partitioning = true)")
    return {table: write(con, query, f"{out}/{table}", None) for table, query in GOLD.items()}
