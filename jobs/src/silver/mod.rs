//! Silver: cleaned, joined, deduplicated tables.

pub mod bookings_fact;
pub mod derive;
pub mod tables;
