"""The bookings_fact job and the Gold rebuild as Polars lazy queries, set-based throughout.

The same plan as duckdb_engine.py, in Polars expressions: Bronze's Parquet files (listed by the
`deltalake` package) scanned lazily, the join's rules as window expressions, the four Silver
tables collected together (shared parts of the plan run once) and written as Parquet partitioned
as boxoffice partitions them; Gold reads that Silver back."""

import os

import polars as pl

from semantics import BOOKINGS, DEDUP_HORIZON, LATENESS, MAX_FUTURE, PAYMENTS, WINDOW, PARTITIONS

SEATS = pl.List(pl.Struct({"seat_number": pl.String, "price": pl.Float64}))

BOOKING = pl.Struct({
    "schema_version": pl.Int32,
    "order_id": pl.String,
    "booking_time": pl.String,
    "customer": pl.Struct({"customer_id": pl.String, "name": pl.String, "email": pl.String}),
    "event_details": pl.Struct({
        "event_id": pl.String,
        "event_name": pl.String,
        "event_location": pl.String,
        "city": pl.String,
        "seats": SEATS,
    }),
    "channel": pl.String,
    "currency": pl.String,
})

PAYMENT = pl.Struct({
    "schema_version": pl.Int32,
    "payment_id": pl.String,
    "order_id": pl.String,
    "payment_time": pl.String,
    "amount": pl.Float64,
    "payment_method": pl.String,
    "payment_status": pl.String,
    "currency": pl.String,
    "fee": pl.Float64,
})

KEY = ["hub", "partition_id", "sequence_number"]


def utc_micros(text: pl.Expr) -> pl.Expr:
    """An RFC 3339 time with any offset, as UTC microseconds."""
    return text.str.to_datetime(format="%+", time_unit="us", time_zone="UTC").dt.epoch("us")


def timestamp(micros: str) -> pl.Expr:
    return pl.col(micros).cast(pl.Datetime("us", "UTC"))


def arrivals(frame: pl.LazyFrame) -> pl.LazyFrame:
    """A Bronze table's rows once per (partition, sequence), with their arrival: the
    partition's enqueued times made non-decreasing by sequence number."""
    return (
        frame.filter(pl.col("event_uid").is_not_null())
        .unique(subset=["partition_id", "sequence_number"], keep="any")
        .with_columns(
            arrival=pl.col("enqueued_time").dt.epoch("us").cum_max()
            .over("partition_id", order_by="sequence_number"))
    )


def parsed(files: dict):
    """Bookings and payments with their fields (times in UTC microseconds; v0 has no
    schema_version). Bodies are not kept: a late event's is read again."""
    def read(table, hub, schema):
        return (arrivals(pl.scan_parquet(files[table]))
                .select(pl.lit(hub, pl.UInt8).alias("hub"), "partition_id", "sequence_number",
                        "arrival", "event_uid", pl.col("body").str.json_decode(schema).alias("j")))

    j = pl.col("j").struct
    bookings = read("bookings_raw", BOOKINGS, BOOKING).select(
        *KEY, "arrival", "event_uid", j.field("order_id"),
        utc_micros(j.field("booking_time")).alias("t"),
        j.field("customer").struct.field("customer_id"),
        j.field("customer").struct.field("name").alias("customer_name"),
        j.field("customer").struct.field("email").alias("customer_email"),
        j.field("event_details").struct.field(
            "event_id", "event_name", "event_location", "city", "seats"),
        j.field("channel", "currency"), j.field("schema_version").fill_null(0),
    )
    payments = read("payments_raw", PAYMENTS, PAYMENT).select(
        *KEY, "arrival", "event_uid",
        j.field("payment_id", "order_id", "amount", "payment_method", "payment_status",
                "currency", "fee"),
        utc_micros(j.field("payment_time")).alias("t"), j.field("schema_version").fill_null(0),
    )
    return bookings, payments


def fates(bookings: pl.LazyFrame, payments: pl.LazyFrame) -> pl.LazyFrame:
    """Each event's fate in arrival order: accepted, late or duplicate, and the watermark it met.
    The watermark is the smaller of the streams' running maxima over earlier events, minus the
    lateness; only an event's first occurrence, not too far ahead of its arrival, raises them."""
    common = [*KEY, "arrival", "event_uid", "t"]
    first_seen = pl.col("rank") == pl.col("rank").min().over("event_uid")
    moves = first_seen & (pl.col("t") <= pl.col("arrival") + MAX_FUTURE)

    def running_max(hub: int) -> pl.Expr:
        # The largest time over the events before this one.
        raised = pl.when(moves & (pl.col("hub") == hub)).then(pl.col("t"))
        return raised.cum_max().forward_fill().shift(1)

    both = pl.col("max_booking").is_not_null() & pl.col("max_payment").is_not_null()
    watermark = pl.col("watermark")
    return (
        pl.concat([bookings.select(common), payments.select(common)])
        .sort(["arrival", "hub", "partition_id", "sequence_number"])
        .with_row_index("rank")
        .with_columns(
            first_seen=first_seen,
            first_time=pl.col("t").first().over("event_uid"),
            max_booking=running_max(BOOKINGS),
            max_payment=running_max(PAYMENTS),
        )
        .with_columns(
            watermark=pl.when(both).then(
                pl.min_horizontal("max_booking", "max_payment") - LATENESS))
        .with_columns(
            fate=pl.when(~pl.col("first_seen")
                         & (watermark.is_null()
                            | (watermark <= pl.col("first_time") + DEDUP_HORIZON)))
            .then(pl.lit("duplicate"))
            .when(pl.col("t") < watermark).then(pl.lit("late"))
            .otherwise(pl.lit("accepted")))
        .select(*KEY, "rank", "watermark", "fate")
    )


def matches(accepted_bookings: pl.LazyFrame, accepted_payments: pl.LazyFrame) -> pl.LazyFrame:
    """Every pair of accepted events on one order within the window, with the flags Gold counts
    by. A booking's matches come in its payments' arrival order, a payment's in its bookings'."""
    success = pl.col("payment_status") == "Success"
    return (
        accepted_bookings.select("order_id", "t", b_rank="rank")
        .join(accepted_payments.select("order_id", "payment_status", p_t="t", p_rank="rank"),
              on="order_id")
        .filter((pl.col("p_t") - pl.col("t")).is_between(0, WINDOW))
        .select(
            "b_rank", "p_rank",
            is_first_booking_match=pl.col("p_rank") == pl.col("p_rank").min().over("b_rank"),
            is_first_payment_match=pl.col("b_rank") == pl.col("b_rank").min().over("p_rank"),
            is_sale=success & (pl.col("p_rank")
                               == pl.when(success).then(pl.col("p_rank")).min().over("b_rank")),
        )
    )


def category() -> pl.Expr:
    """Category by the first substring match, ignoring case (jobs/src/silver/derive.rs)."""
    name = pl.col("event_name").str.to_lowercase()
    return (pl.when(name.str.contains("concert", literal=True)).then(pl.lit("Music"))
            .when(name.str.contains("play", literal=True)).then(pl.lit("Theater"))
            .when(name.str.contains("movie", literal=True)).then(pl.lit("Cinema"))
            .otherwise(pl.lit("Other")).alias("event_category"))


def day_and_hour(micros: str) -> list:
    return [timestamp(micros).dt.to_string("%A").alias("booking_day_of_week"),
            timestamp(micros).dt.hour().cast(pl.Int32).alias("booking_hour")]


def payment_type() -> pl.Expr:
    method = pl.col("payment_method")
    return (pl.when(method.is_in(["Credit Card", "Debit Card"])).then(pl.lit("Card"))
            .when(method == "PayPal").then(pl.lit("Online"))
            .otherwise(pl.lit("Cash")).alias("payment_type"))


def fact(m: pl.LazyFrame, bookings: pl.LazyFrame, payments: pl.LazyFrame, now) -> pl.LazyFrame:
    b = bookings.select(
        "order_id", "customer_id", "customer_name", "customer_email", "event_id", "event_name",
        "event_location", "seats", "channel", "city", "schema_version",
        b_rank="rank", b_t="t", b_arrival="arrival", b_currency="currency",
        booking_event_uid="event_uid")
    p = payments.select(
        "payment_id", "amount", "payment_method", "payment_status",
        p_rank="rank", p_t="t", p_arrival="arrival", p_currency="currency",
        payment_event_uid="event_uid")
    return (
        m.join(b, on="b_rank").join(p, on="p_rank")
        .explode("seats")
        .with_columns(seat_number=pl.col("seats").struct.field("seat_number"),
                      seat_price=pl.col("seats").struct.field("price"))
        # The expectations whose action is drop (mod.rs: declared_expectations).
        .filter((pl.col("seat_price") > 0) & (pl.col("amount") >= 0)
                & (pl.col("b_t") - pl.col("b_arrival") <= MAX_FUTURE))
        .select(
            "order_id", timestamp("b_t").alias("booking_time"), "customer_id", "customer_name",
            "customer_email", "event_id", "event_name", "event_location", "seat_number",
            "seat_price", category(), *day_and_hour("b_t"), "payment_id",
            timestamp("p_t").alias("payment_time"), "amount", "payment_method", payment_type(),
            timestamp("b_arrival").alias("booking_event_time"),
            timestamp("p_arrival").alias("payment_event_time"), "payment_status",
            pl.coalesce("p_currency", "b_currency").alias("currency"), "channel", "city",
            "schema_version", pl.lit("stream").alias("source"), "booking_event_uid",
            "payment_event_uid", "is_first_booking_match", "is_first_payment_match", "is_sale",
            pl.lit(now).alias("processed_at"), timestamp("b_t").dt.date().alias("booking_date"),
        )
    )


def unpaid(m: pl.LazyFrame, bookings: pl.LazyFrame, now) -> pl.LazyFrame:
    seats = pl.col("seats").list
    return (
        bookings.join(m, left_on="rank", right_on="b_rank", how="anti")
        .select(
            "order_id", timestamp("t").alias("booking_time"), "customer_id", "customer_name",
            "customer_email", "event_id", "event_name", category(),
            seats.len().cast(pl.Int32).alias("seats"),
            seats.eval(pl.element().struct.field("seat_number")).list.join(",")
            .alias("seat_numbers"),
            seats.eval(pl.element().struct.field("price")).list.sum().alias("total_price"),
            *day_and_hour("t"), timestamp("arrival").alias("booking_event_time"), "channel",
            "city", "currency", "schema_version", pl.col("event_uid").alias("booking_event_uid"),
            pl.lit(now).alias("processed_at"), timestamp("t").dt.date().alias("booking_date"),
        )
    )


def orphans(m: pl.LazyFrame, payments: pl.LazyFrame, now) -> pl.LazyFrame:
    return (
        payments.join(m, left_on="rank", right_on="p_rank", how="anti")
        .select(
            "payment_id", "order_id", timestamp("t").alias("payment_time"), "amount",
            "payment_method", payment_type(), "payment_status", "currency", "fee",
            timestamp("arrival").alias("payment_event_time"), "schema_version",
            pl.col("event_uid").alias("payment_event_uid"), pl.lit(now).alias("processed_at"),
            timestamp("t").dt.date().alias("payment_date"),
        )
    )


def late(f: pl.LazyFrame, bookings: pl.LazyFrame, payments: pl.LazyFrame, files: dict,
         now) -> pl.LazyFrame:
    columns = [*KEY, "event_uid", "order_id", "t", "arrival"]
    events = pl.concat([bookings.select(columns), payments.select(columns)])
    late_events = f.filter(pl.col("fate") == "late").join(events, on=KEY)
    bodies = pl.concat([
        pl.scan_parquet(files[table])
        .select(pl.lit(hub, pl.UInt8).alias("hub"), "partition_id", "sequence_number", "body")
        for table, hub in (("bookings_raw", BOOKINGS), ("payments_raw", PAYMENTS))
    ]).join(late_events.select(KEY), on=KEY, how="semi").unique(subset=KEY, keep="any")
    return (
        late_events.join(bodies, on=KEY)
        .select(
            pl.when(pl.col("hub") == BOOKINGS).then(pl.lit("bookings"))
            .otherwise(pl.lit("payments")).alias("hub"),
            "event_uid", "order_id", timestamp("t").alias("event_time"),
            timestamp("arrival").alias("arrival_time"), timestamp("watermark"),
            ((pl.col("watermark") - pl.col("t")) / 1e6).alias("behind_seconds"),
            "partition_id", "sequence_number", "body", pl.lit(now).alias("processed_at"),
            pl.lit(None, pl.Int64).alias("backfill"),
        )
    )


def now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def write(frame: pl.DataFrame, path: str, partition) -> int:
    os.makedirs(path, exist_ok=True)
    if partition and frame.height:
        frame.write_parquet(path, partition_by=partition)
    else:
        frame.write_parquet(f"{path}/part-0.parquet")
    return frame.height


def silver(bronze_files: dict, out: str) -> dict:
    """Runs the join over Bronze and writes the four Silver tables under `out`. Each stage's
    result is collected before the next uses it more than once (as DuckDB's temporary tables
    are): the optimiser would otherwise plan the shared inputs once per use."""
    bookings, payments = (f.lazy() for f in pl.collect_all(parsed(bronze_files)))
    f = fates(bookings, payments).collect().lazy()
    accepted = f.filter(pl.col("fate") == "accepted").select(*KEY, "rank")
    accepted_bookings, accepted_payments = (
        f.lazy() for f in pl.collect_all([bookings.join(accepted, on=KEY),
                                          payments.join(accepted, on=KEY)]))
    m = matches(accepted_bookings, accepted_payments).collect().lazy()
    at = now()
    frames = pl.collect_all([
        fact(m, accepted_bookings, accepted_payments, at),
        unpaid(m, accepted_bookings, at),
        orphans(m, accepted_payments, at),
        late(f, bookings, payments, bronze_files, at),
    ])
    names = ["bookings_fact", "unpaid_bookings", "orphan_payments", "late_events"]
    return {name: write(frame, f"{out}/{name}", PARTITIONS[name])
            for name, frame in zip(names, frames)}


MONEY = pl.Decimal(18, 2)


def money(column: str) -> pl.Expr:
    return pl.col(column).cast(MONEY)


def first_payments(fact: pl.LazyFrame, keys: list) -> pl.LazyFrame:
    """Each payment once, at its first match (as `SELECT DISTINCT payment_event_uid, ...`)."""
    return (fact.filter("is_first_payment_match")
            .select("payment_event_uid", *keys, "payment_status", money("amount"))
            .unique())


def succeeded(column: str = "amount") -> pl.Expr:
    return pl.when(pl.col("payment_status") == "Success").then(pl.col(column)).otherwise(
        pl.lit(0).cast(MONEY))


def failed() -> pl.Expr:
    return (pl.col("payment_status") == "Failed").sum()


def event_performance(fact, unpaid) -> pl.LazyFrame:
    keys = ["event_id", "event_name", "event_category"]
    orders = pl.concat([
        fact.filter("is_first_booking_match").group_by(keys)
        .agg(orders=pl.col("booking_event_uid").n_unique()),
        unpaid.group_by(keys).agg(orders=pl.len()),
    ]).group_by(keys).agg(pl.col("orders").sum())
    sales = (fact.filter("is_sale").group_by(keys)
             .agg(seats_sold=pl.len(), seats_value=money("seat_price").sum()))
    payments = (first_payments(fact, keys).group_by(keys)
                .agg(revenue=succeeded().sum(), failed_payments=failed()))
    seats_value = pl.col("seats_value").fill_null(pl.lit(0).cast(MONEY))
    seats_sold = pl.col("seats_sold").fill_null(0)
    # round(x, 2) as DataFusion rounds: half away from zero, of x * 100.
    average = ((seats_value.cast(pl.Float64) / seats_sold) * 100).round(
        0, mode="half_away_from_zero") / 100
    return (
        orders.join(sales, on=keys, how="full", coalesce=True, nulls_equal=True)
        .join(payments, on=keys, how="full", coalesce=True, nulls_equal=True)
        .select(
            *keys,
            pl.col("orders").fill_null(0).cast(pl.Int64),
            seats_sold.cast(pl.Int64),
            pl.col("revenue").fill_null(pl.lit(0).cast(MONEY)).cast(MONEY),
            pl.when(seats_sold > 0).then(average).cast(MONEY).alias("avg_seat_price"),
            pl.col("failed_payments").fill_null(0).cast(pl.Int64),
            seats_value.cast(MONEY),
        )
    )


def sales_by_category_hour(fact) -> pl.LazyFrame:
    keys = ["booking_date", "booking_hour", "booking_day_of_week", "event_category"]
    sales = (fact.filter("is_sale").group_by(keys)
             .agg(orders=pl.col("booking_event_uid").n_unique(), seats=pl.len()))
    revenue = (first_payments(fact, keys).filter(pl.col("payment_status") == "Success")
               .group_by(keys).agg(revenue=pl.col("amount").sum()))
    return (
        sales.join(revenue, on=keys, how="full", coalesce=True, nulls_equal=True)
        .select(*keys, pl.col("orders").fill_null(0).cast(pl.Int64),
                pl.col("seats").fill_null(0).cast(pl.Int64),
                pl.col("revenue").fill_null(pl.lit(0).cast(MONEY)).cast(MONEY))
    )


def payment_mix(fact, orphans) -> pl.LazyFrame:
    keys = ["payment_method", "payment_type"]
    each = pl.concat([
        first_payments(fact, keys),
        orphans.select("payment_event_uid", *keys, "payment_status", money("amount")),
    ])
    return (
        each.group_by(keys).agg(
            attempts=pl.len(),
            succeeded=(pl.col("payment_status") == "Success").sum(),
            failed=failed(),
            amount=succeeded().sum(),
        )
        .select(*keys, pl.col("attempts").cast(pl.Int64), pl.col("succeeded").cast(pl.Int64),
                pl.col("failed").cast(pl.Int64),
                pl.when(pl.col("attempts") > 0)
                .then(pl.col("succeeded").cast(pl.Float64) / pl.col("attempts"))
                .alias("success_rate"),
                pl.col("amount").cast(MONEY))
    )


def bookings_and_paid(fact, unpaid, keys: list) -> pl.LazyFrame:
    """Bookings resolved (first match or unpaid) and paid (first sale), per `keys`."""
    bookings = pl.concat([
        fact.filter("is_first_booking_match").group_by(keys)
        .agg(bookings=pl.col("booking_event_uid").n_unique()),
        unpaid.group_by(keys).agg(bookings=pl.len()),
    ]).group_by(keys).agg(pl.col("bookings").sum())
    paid = fact.filter("is_sale").group_by(keys).agg(
        paid=pl.col("booking_event_uid").n_unique(), seats_sold=pl.len())
    return (bookings.join(paid, on=keys, how="full", coalesce=True, nulls_equal=True)
            .with_columns(pl.col("bookings", "paid", "seats_sold").fill_null(0).cast(pl.Int64)))


def conversion(fact, unpaid) -> pl.LazyFrame:
    keys = ["booking_date", "booking_hour"]
    return bookings_and_paid(fact, unpaid, keys).select(
        *keys, "bookings", "paid", (pl.col("bookings") - pl.col("paid")).alias("unpaid"),
        pl.when(pl.col("bookings") > 0)
        .then(pl.col("paid").cast(pl.Float64) / pl.col("bookings")).alias("conversion_rate"))


def booking_funnel(fact, unpaid) -> pl.LazyFrame:
    keys = ["booking_date", "booking_hour", "event_category"]
    attempts = (first_payments(fact, keys).group_by(keys)
                .agg(revenue=succeeded().sum(), payment_attempts=pl.len(),
                     failed_payments=failed()))
    return (
        bookings_and_paid(fact, unpaid, keys)
        .join(attempts, on=keys, how="full", coalesce=True, nulls_equal=True)
        .select(*keys, pl.col("bookings", "paid", "seats_sold").fill_null(0),
                pl.col("revenue").fill_null(pl.lit(0).cast(MONEY)).cast(MONEY),
                pl.col("payment_attempts", "failed_payments").fill_null(0).cast(pl.Int64))
    )


def gold(silver_dir: str, out: str) -> dict:
    """Rebuilds the five Gold tables from the Silver tables under `silver_dir`."""
    def scan(table):
        return pl.scan_parquet(f"{silver_dir}/{table}/**/*.parquet", hive_partitioning=True)

    fact, unpaid_rows, orphan_rows = (scan("bookings_fact"), scan("unpaid_bookings"),
                                      scan("orphan_payments"))
    at = now()
    models = {
        "event_performance": event_performance(fact, unpaid_rows),
        "sales_by_category_hour": sales_by_category_hour(fact),
        "payment_mix": payment_mix(fact, orphan_rows),
        "conversion": conversion(fact, unpaid_rows),
        "booking_funnel": booking_funnel(fact, unpaid_rows),
    }
    frames = pl.collect_all([m.with_columns(refreshed_at=pl.lit(at)) for m in models.values()])
    return {name: write(frame, f"{out}/{name}", None) for name, frame in zip(models, frames)}
