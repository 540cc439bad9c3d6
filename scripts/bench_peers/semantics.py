"""What every engine reproduces of boxoffice's bookings_fact job and Gold models: the join's
settings (boxoffice's defaults, jobs/src/silver/bookings_fact/join.rs), the expectations that drop
fact rows (jobs/src/silver/bookings_fact/mod.rs) and the output tables' columns
(jobs/src/silver/tables.rs, jobs/src/gold/tables.rs), each with the type it is compared as.

Stdlib only: the driver imports it before the virtualenv exists."""

MICROS = 1_000_000

# JoinConfig::default(), in microseconds.
WINDOW = 120 * MICROS  # a payment matches a booking 0..=window after it
LATENESS = 30 * MICROS  # the watermark trails the streams' largest time by this
DEDUP_HORIZON = 600 * MICROS  # an event_uid is remembered this long past its time
MAX_FUTURE = 300 * MICROS  # an event further ahead of its arrival does not move the watermark

# Hub numbers in the arrival order (bookings sort before payments at the same instant).
BOOKINGS, PAYMENTS = 0, 1

# Columns compared between engines, with the type each is cast to before comparing. Processing
# timestamps (processed_at, refreshed_at) are left out: they are the only columns not defined by
# the data. A column that is a partition in one engine's layout and a file column in another's
# compares the same once cast.
SILVER = {
    "bookings_fact": [
        ("order_id", "VARCHAR"),
        ("booking_time", "TIMESTAMPTZ"),
        ("customer_id", "VARCHAR"),
        ("customer_name", "VARCHAR"),
        ("customer_email", "VARCHAR"),
        ("event_id", "VARCHAR"),
        ("event_name", "VARCHAR"),
        ("event_location", "VARCHAR"),
        ("seat_number", "VARCHAR"),
        ("seat_price", "DOUBLE"),
        ("event_category", "VARCHAR"),
        ("booking_day_of_week", "VARCHAR"),
        ("booking_hour", "INTEGER"),
        ("payment_id", "VARCHAR"),
        ("payment_time", "TIMESTAMPTZ"),
        ("amount", "DOUBLE"),
        ("payment_method", "VARCHAR"),
        ("payment_type", "VARCHAR"),
        ("booking_event_time", "TIMESTAMPTZ"),
        ("payment_event_time", "TIMESTAMPTZ"),
        ("payment_status", "VARCHAR"),
        ("currency", "VARCHAR"),
        ("channel", "VARCHAR"),
        ("city", "VARCHAR"),
        ("schema_version", "INTEGER"),
        ("source", "VARCHAR"),
        ("booking_event_uid", "VARCHAR"),
        ("payment_event_uid", "VARCHAR"),
        ("is_first_booking_match", "BOOLEAN"),
        ("is_first_payment_match", "BOOLEAN"),
        ("is_sale", "BOOLEAN"),
        ("booking_date", "DATE"),
    ],
    "unpaid_bookings": [
        ("order_id", "VARCHAR"),
        ("booking_time", "TIMESTAMPTZ"),
        ("customer_id", "VARCHAR"),
        ("customer_name", "VARCHAR"),
        ("customer_email", "VARCHAR"),
        ("event_id", "VARCHAR"),
        ("event_name", "VARCHAR"),
        ("event_category", "VARCHAR"),
        ("seats", "INTEGER"),
        ("seat_numbers", "VARCHAR"),
        ("total_price", "DOUBLE"),
        ("booking_day_of_week", "VARCHAR"),
        ("booking_hour", "INTEGER"),
        ("booking_event_time", "TIMESTAMPTZ"),
        ("channel", "VARCHAR"),
        ("city", "VARCHAR"),
        ("currency", "VARCHAR"),
        ("schema_version", "INTEGER"),
        ("booking_event_uid", "VARCHAR"),
        ("booking_date", "DATE"),
    ],
    "orphan_payments": [
        ("payment_id", "VARCHAR"),
        ("order_id", "VARCHAR"),
        ("payment_time", "TIMESTAMPTZ"),
        ("amount", "DOUBLE"),
        ("payment_method", "VARCHAR"),
        ("payment_type", "VARCHAR"),
        ("payment_status", "VARCHAR"),
        ("currency", "VARCHAR"),
        ("fee", "DOUBLE"),
        ("payment_event_time", "TIMESTAMPTZ"),
        ("schema_version", "INTEGER"),
        ("payment_event_uid", "VARCHAR"),
        ("payment_date", "DATE"),
    ],
    "late_events": [
        ("hub", "VARCHAR"),
        ("event_uid", "VARCHAR"),
        ("order_id", "VARCHAR"),
        ("event_time", "TIMESTAMPTZ"),
        ("arrival_time", "TIMESTAMPTZ"),
        ("watermark", "TIMESTAMPTZ"),
        # Whole microseconds in seconds: compared to the microsecond (Polars divides by a
        # constant as a multiplication by its reciprocal, which can differ in the last bit).
        ("behind_seconds", "SECONDS_TO_MICROS"),
        ("partition_id", "INTEGER"),
        ("sequence_number", "BIGINT"),
        ("body", "VARCHAR"),
    ],
}

MONEY = "DECIMAL(18,2)"

# The five Gold models boxoffice's `job run gold --full` rebuilds (gold.event_occupancy needs
# silver.event_catalog, which a generated lake does not have: boxoffice skips it, so do we).
GOLD = {
    "event_performance": [
        ("event_id", "VARCHAR"),
        ("event_name", "VARCHAR"),
        ("event_category", "VARCHAR"),
        ("orders", "BIGINT"),
        ("seats_sold", "BIGINT"),
        ("revenue", MONEY),
        ("avg_seat_price", MONEY),
        ("failed_payments", "BIGINT"),
        ("seats_value", MONEY),
    ],
    "sales_by_category_hour": [
        ("booking_date", "DATE"),
        ("booking_hour", "INTEGER"),
        ("booking_day_of_week", "VARCHAR"),
        ("event_category", "VARCHAR"),
        ("orders", "BIGINT"),
        ("seats", "BIGINT"),
        ("revenue", MONEY),
    ],
    "payment_mix": [
        ("payment_method", "VARCHAR"),
        ("payment_type", "VARCHAR"),
        ("attempts", "BIGINT"),
        ("succeeded", "BIGINT"),
        ("failed", "BIGINT"),
        ("success_rate", "DOUBLE"),
        ("amount", MONEY),
    ],
    "conversion": [
        ("booking_date", "DATE"),
        ("booking_hour", "INTEGER"),
        ("bookings", "BIGINT"),
        ("paid", "BIGINT"),
        ("unpaid", "BIGINT"),
        ("conversion_rate", "DOUBLE"),
    ],
    "booking_funnel": [
        ("booking_date", "DATE"),
        ("booking_hour", "INTEGER"),
        ("event_category", "VARCHAR"),
        ("bookings", "BIGINT"),
        ("paid", "BIGINT"),
        ("seats_sold", "BIGINT"),
        ("revenue", MONEY),
        ("payment_attempts", "BIGINT"),
        ("failed_payments", "BIGINT"),
    ],
}

# How each Silver table is partitioned on disk (as boxoffice lays it out).
PARTITIONS = {
    "bookings_fact": "booking_date",
    "unpaid_bookings": "booking_date",
    "orphan_payments": "payment_date",
    "late_events": None,
}
