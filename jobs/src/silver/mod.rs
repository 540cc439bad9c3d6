//! Silver: cleaned, joined, deduplicated tables.

pub mod bookings_fact;
