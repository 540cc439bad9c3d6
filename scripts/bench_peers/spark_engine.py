"""The bookings_fact job and the Gold rebuild in Spark SQL (PySpark, local[2]), set-based
throughout: the plan of duckdb_engine.py in Spark's dialect. Bronze's Parquet files are listed by
the `deltalake` package (delta-spark would be downloaded from Maven at run time); intermediate
results used more than once are cached; outputs are Parquet partitioned as boxoffice partitions
its tables.

The JVM is stopped and waited for before the process exits, so the driver's measurement of this
process (CPU seconds of waited-for descendants, their peak memory) includes it."""

from pyspark.sql import SparkSession

from gold_sql import GOLD
from semantics import BOOKINGS, DEDUP_HORIZON, LATENESS, MAX_FUTURE, PAYMENTS, WINDOW, PARTITIONS

BOOKING_SCHEMA = (
    "schema_version INT, order_id STRING, booking_time STRING, "
    "customer STRUCT<customer_id: STRING, name: STRING, email: STRING>, "
    "event_details STRUCT<event_id: STRING, event_name: STRING, event_location: STRING, "
    "city: STRING, seats: ARRAY<STRUCT<seat_number: STRING, price: DOUBLE>>>, "
    "channel STRING, currency STRING")

PAYMENT_SCHEMA = (
    "schema_version INT, payment_id STRING, order_id STRING, payment_time STRING, "
    "amount DOUBLE, payment_method STRING, payment_status STRING, currency STRING, fee DOUBLE")


def parsed(raw: str, hub: int, schema: str, columns: str) -> str:
    """Each event of a Bronze table parsed, once per (partition, sequence), with its arrival."""
    return f"""
WITH raw AS (
    SELECT partition_id, sequence_number, unix_micros(enqueued_time) AS enqueued, event_uid,
           from_json(body, '{schema}') AS j
    FROM {raw} WHERE event_uid IS NOT NULL
), ordered AS (
    SELECT *,
           max(enqueued) OVER (PARTITION BY partition_id ORDER BY sequence_number
                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS arrival,
           lag(sequence_number) OVER (PARTITION BY partition_id ORDER BY sequence_number)
               AS previous
    FROM raw
)
SELECT CAST({hub} AS TINYINT) AS hub, partition_id, sequence_number, arrival, event_uid,
       {columns}, coalesce(j.schema_version, 0) AS schema_version
FROM ordered WHERE previous IS NULL OR previous <> sequence_number
"""


BOOKINGS_SQL = parsed("bookings_raw", BOOKINGS, BOOKING_SCHEMA, """
       j.order_id, unix_micros(CAST(j.booking_time AS TIMESTAMP)) AS t,
       j.customer.customer_id, j.customer.name AS customer_name,
       j.customer.email AS customer_email, j.event_details.event_id,
       j.event_details.event_name, j.event_details.event_location, j.event_details.city,
       j.event_details.seats, j.channel, j.currency""")

PAYMENTS_SQL = parsed("payments_raw", PAYMENTS, PAYMENT_SCHEMA, """
       j.payment_id, j.order_id, unix_micros(CAST(j.payment_time AS TIMESTAMP)) AS t, j.amount,
       j.payment_method, j.payment_status, j.currency, j.fee""")

# The watermark before each event, from the streams' running maxima (see duckdb_engine.py).
FATES_SQL = f"""
WITH stream AS (
    SELECT hub, partition_id, sequence_number, arrival, event_uid, t FROM bookings
    UNION ALL
    SELECT hub, partition_id, sequence_number, arrival, event_uid, t FROM payments
), ranked AS (
    SELECT *, row_number() OVER (ORDER BY arrival, hub, partition_id, sequence_number) AS rank
    FROM stream
), first AS (
    SELECT *, rank = min(rank) OVER (PARTITION BY event_uid) AS first_seen,
           min_by(t, rank) OVER (PARTITION BY event_uid) AS first_time
    FROM ranked
), marked AS (
    SELECT *,
        max(CASE WHEN hub = {BOOKINGS} AND first_seen AND t <= arrival + {MAX_FUTURE} THEN t END)
            OVER (ORDER BY rank ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS max_booking,
        max(CASE WHEN hub = {PAYMENTS} AND first_seen AND t <= arrival + {MAX_FUTURE} THEN t END)
            OVER (ORDER BY rank ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS max_payment
    FROM first
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

MATCHES_SQL = f"""
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
    return f"""CASE WHEN {name} ILIKE '%concert%' THEN 'Music'
            WHEN {name} ILIKE '%play%' THEN 'Theater'
            WHEN {name} ILIKE '%movie%' THEN 'Cinema'
            ELSE 'Other' END AS event_category"""


def day_and_hour(micros: str) -> str:
    return f"""date_format(timestamp_micros({micros}), 'EEEE') AS booking_day_of_week,
           hour(timestamp_micros({micros})) AS booking_hour"""


PAYMENT_TYPE = """CASE WHEN payment_method IN ('Credit Card', 'Debit Card') THEN 'Card'
            WHEN payment_method = 'PayPal' THEN 'Online' ELSE 'Cash' END AS payment_type"""

FACT_SQL = f"""
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
    SELECT *, explode(seats) AS seat FROM joined
)
SELECT order_id, timestamp_micros(b_t) AS booking_time, customer_id, customer_name,
       customer_email, event_id, event_name, event_location, seat.seat_number,
       seat.price AS seat_price, {category("event_name")}, {day_and_hour("b_t")},
       payment_id, timestamp_micros(p_t) AS payment_time, amount, payment_method,
       {PAYMENT_TYPE}, timestamp_micros(b_arrival) AS booking_event_time,
       timestamp_micros(p_arrival) AS payment_event_time, payment_status,
       coalesce(p_currency, b_currency) AS currency, channel, city, schema_version,
       'stream' AS source, booking_event_uid, payment_event_uid, is_first_booking_match,
       is_first_payment_match, is_sale, current_timestamp() AS processed_at,
       CAST(timestamp_micros(b_t) AS DATE) AS booking_date
FROM seated
WHERE seat.price > 0 AND amount >= 0 AND b_t - b_arrival <= {MAX_FUTURE}
"""

UNPAID_SQL = f"""
SELECT b.order_id, timestamp_micros(b.t) AS booking_time, b.customer_id, b.customer_name,
       b.customer_email, b.event_id, b.event_name, {category("b.event_name")},
       size(b.seats) AS seats,
       array_join(transform(b.seats, s -> s.seat_number), ',') AS seat_numbers,
       aggregate(b.seats, CAST(0 AS DOUBLE), (acc, s) -> acc + s.price) AS total_price,
       {day_and_hour("b.t")},
       timestamp_micros(b.arrival) AS booking_event_time, b.channel, b.city, b.currency,
       b.schema_version, b.event_uid AS booking_event_uid, current_timestamp() AS processed_at,
       CAST(timestamp_micros(b.t) AS DATE) AS booking_date
FROM accepted_bookings b LEFT ANTI JOIN matches m ON m.b_rank = b.rank
"""

ORPHANS_SQL = f"""
SELECT p.payment_id, p.order_id, timestamp_micros(p.t) AS payment_time, p.amount,
       p.payment_method, {PAYMENT_TYPE}, p.payment_status, p.currency, p.fee,
       timestamp_micros(p.arrival) AS payment_event_time, p.schema_version,
       p.event_uid AS payment_event_uid, current_timestamp() AS processed_at,
       CAST(timestamp_micros(p.t) AS DATE) AS payment_date
FROM accepted_payments p LEFT ANTI JOIN matches m ON m.p_rank = p.rank
"""

LATE_SQL = f"""
WITH late AS (
    SELECT f.hub, f.partition_id, f.sequence_number, f.watermark, e.event_uid, e.order_id, e.t,
           e.arrival
    FROM fates f JOIN (
        SELECT hub, partition_id, sequence_number, event_uid, order_id, t, arrival FROM bookings
        UNION ALL
        SELECT hub, partition_id, sequence_number, event_uid, order_id, t, arrival FROM payments
    ) e ON e.hub = f.hub AND e.partition_id = f.partition_id
       AND e.sequence_number = f.sequence_number
    WHERE f.fate = 'late'
), raw AS (
    SELECT CAST({BOOKINGS} AS TINYINT) AS hub, partition_id, sequence_number, body
    FROM bookings_raw
    UNION ALL
    SELECT CAST({PAYMENTS} AS TINYINT), partition_id, sequence_number, body FROM payments_raw
), bodies AS (
    SELECT hub, partition_id, sequence_number, first(body) AS body
    FROM raw LEFT SEMI JOIN late USING (hub, partition_id, sequence_number)
    GROUP BY hub, partition_id, sequence_number
)
SELECT CASE WHEN hub = {BOOKINGS} THEN 'bookings' ELSE 'payments' END AS hub, event_uid,
       order_id, timestamp_micros(t) AS event_time, timestamp_micros(arrival) AS arrival_time,
       timestamp_micros(watermark) AS watermark,
       (watermark - t) / 1e6 AS behind_seconds, partition_id, sequence_number, body,
       current_timestamp() AS processed_at, CAST(NULL AS BIGINT) AS backfill
FROM late JOIN bodies USING (hub, partition_id, sequence_number)
"""


def session() -> SparkSession:
    return (SparkSession.builder.master("local[2]").appName("bench-peers")
            .config("spark.driver.memory", "4g")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .getOrCreate())


def stop(spark: SparkSession) -> None:
    """Stops Spark and waits for its JVM, so the JVM's CPU and memory count as this process's."""
    gateway = spark.sparkContext._gateway
    jvm = getattr(gateway, "proc", None)
    spark.stop()
    gateway.shutdown()
    if jvm is not None:
        jvm.stdin.close()  # the JVM exits when its stdin closes
        jvm.wait()


def write(spark, frame, path: str, partition) -> int:
    writer = frame.write.mode("overwrite")
    if partition:
        writer = writer.partitionBy(partition)
    else:
        frame = frame.coalesce(1)
        writer = frame.write.mode("overwrite")
    writer.parquet(path)
    return spark.read.parquet(path).count()


def view(spark, name: str, sql: str):
    """`sql`'s rows, computed once and kept, as the view `name`."""
    frame = spark.sql(sql).persist()
    frame.createOrReplaceTempView(name)
    return frame


def silver(bronze_files: dict, out: str) -> dict:
    """Runs the join over Bronze and writes the four Silver tables under `out`."""
    spark = session()
    try:
        for table in ("bookings_raw", "payments_raw"):
            spark.read.parquet(*bronze_files[table]).createOrReplaceTempView(table)
        bookings = view(spark, "bookings", BOOKINGS_SQL)
        payments = view(spark, "payments", PAYMENTS_SQL)
        view(spark, "fates", FATES_SQL)
        counts = {"late_events": write(spark, spark.sql(LATE_SQL), f"{out}/late_events", None)}
        view(spark, "accepted_bookings", "SELECT b.*, f.rank FROM bookings b JOIN fates f "
             "USING (hub, partition_id, sequence_number) WHERE f.fate = 'accepted'")
        view(spark, "accepted_payments", "SELECT p.*, f.rank FROM payments p JOIN fates f "
             "USING (hub, partition_id, sequence_number) WHERE f.fate = 'accepted'")
        bookings.unpersist()
        payments.unpersist()
        view(spark, "matches", MATCHES_SQL)
        for table, sql in (("bookings_fact", FACT_SQL), ("unpaid_bookings", UNPAID_SQL),
                           ("orphan_payments", ORPHANS_SQL)):
            counts[table] = write(spark, spark.sql(sql), f"{out}/{table}", PARTITIONS[table])
        return counts
    finally:
        stop(spark)


def gold(silver_dir: str, out: str) -> dict:
    """Rebuilds the five Gold tables from the Silver tables under `silver_dir`."""
    spark = session()
    try:
        for name, table in (("fact", "bookings_fact"), ("unpaid", "unpaid_bookings"),
                            ("orphans", "orphan_payments")):
            spark.read.parquet(f"{silver_dir}/{table}").createOrReplaceTempView(name)
        spark.table("fact").persist().createOrReplaceTempView("fact")
        return {table: write(spark, spark.sql(sql.replace("current_timestamp AS",
                                                          "current_timestamp() AS")),
                             f"{out}/{table}", None)
                for table, sql in GOLD.items()}
    finally:
        stop(spark)
