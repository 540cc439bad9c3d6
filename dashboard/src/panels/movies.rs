//! The CDC movie panel: the Streamlit demo's metrics and charts, over the latest state of every
//! booking (`silver/movie_bookings_filtered`, which `gold/movie_booking_insights` aggregates
//! without the date and status the filters need).

use std::collections::BTreeMap;

use super::{Cell, PanelDef, Rows, ratio};
use crate::filters::Filters;
use crate::snapshot::Snapshot;
use crate::snapshot::rows::MovieBooking;

const DATES_AND_STATUS: &[&str] = &["from", "to", "status"];

const NO_MOVIES: &str = "No movie bookings yet: `boxoffice up` runs a simulated booking service and the cdc job (or `boxoffice cdc simulate --run-cdc`)";

fn has_movies(s: &Snapshot) -> bool {
    !s.movies.is_empty()
}

fn bookings<'a>(s: &'a Snapshot, f: &'a Filters) -> impl Iterator<Item = &'a MovieBooking> {
    s.movies
        .iter()
        .filter(|b| f.date_ok(b.date) && f.status_ok(b.status.as_deref()))
}

/// Whether a booking counts as sold (as `gold/movie_booking_insights` counts revenue).
fn sold(b: &MovieBooking) -> bool {
    matches!(b.status.as_deref(), Some("BOOKED" | "COMPLETED"))
}

/// A group's bookings, tickets and value.
#[derive(Default)]
struct Group {
    bookings: i64,
    tickets: i64,
    value: i128,
}

/// Each key's group, and how many bookings passed the filters.
fn grouped(
    s: &Snapshot,
    f: &Filters,
    key: fn(&MovieBooking) -> Option<String>,
) -> (BTreeMap<Option<String>, Group>, usize) {
    let mut by: BTreeMap<Option<String>, Group> = BTreeMap::new();
    let mut matched = 0;
    for b in bookings(s, f) {
        matched += 1;
        let g = by.entry(key(b)).or_default();
        g.bookings += 1;
        g.tickets += b.tickets;
        g.value += b.value;
    }
    (by, matched)
}

fn by_status(b: &MovieBooking) -> Option<String> {
    b.status.clone()
}

fn by_movie(b: &MovieBooking) -> Option<String> {
    b.movie_id.clone()
}

/// One row per group, with `cell` picking the measure.
fn chart(
    s: &Snapshot,
    f: &Filters,
    key: fn(&MovieBooking) -> Option<String>,
    cell: fn(&Group) -> Cell,
) -> Rows {
    let (by, matched) = grouped(s, f, key);
    Rows {
        rows: by
            .into_iter()
            .map(|(k, v)| vec![Cell::Text(k), cell(&v)])
            .collect(),
        matched,
    }
}

/// A movie panel: dates and status apply, and an empty lake says how to fill it.
const fn movie_panel(
    name: &'static str,
    title: &'static str,
    columns: &'static [&'static str],
    build: fn(&Snapshot, &Filters) -> Rows,
) -> PanelDef {
    PanelDef {
        name,
        title,
        applies: DATES_AND_STATUS,
        columns,
        has_data: has_movies,
        no_data: NO_MOVIES,
        build,
    }
}

pub const KPIS: PanelDef = movie_panel(
    "movie_kpis",
    "Movie bookings (CDC)",
    &[
        "total_bookings",
        "total_tickets_sold",
        "total_revenue",
        "total_cancellations",
    ],
    |s, f| {
        let (mut n, mut tickets, mut revenue, mut cancelled) = (0i64, 0i64, 0i128, 0i64);
        for b in bookings(s, f) {
            n += 1;
            if sold(b) {
                tickets += b.tickets;
                revenue += b.value;
            }
            cancelled += i64::from(b.status.as_deref() == Some("CANCELLED"));
        }
        Rows {
            rows: vec![vec![
                Cell::Int(n),
                Cell::Int(tickets),
                Cell::Money(revenue),
                Cell::Int(cancelled),
            ]],
            matched: n as usize,
        }
    },
);

pub const REVENUE_BY_STATUS: PanelDef = movie_panel(
    "movie_revenue_by_status",
    "Revenue by status",
    &["status", "revenue"],
    |s, f| chart(s, f, by_status, |g| Cell::Money(g.value)),
);

pub const BOOKINGS_BY_MOVIE: PanelDef = movie_panel(
    "movie_bookings_by_movie",
    "Bookings by movie",
    &["movie_id", "bookings"],
    |s, f| chart(s, f, by_movie, |g| Cell::Int(g.bookings)),
);

pub const TICKETS_BY_STATUS: PanelDef = movie_panel(
    "movie_tickets_by_status",
    "Tickets by status",
    &["status", "tickets"],
    |s, f| chart(s, f, by_status, |g| Cell::Int(g.tickets)),
);

pub const REVENUE_BY_MOVIE: PanelDef = movie_panel(
    "movie_revenue_by_movie",
    "Revenue by movie",
    &["movie_id", "revenue"],
    |s, f| chart(s, f, by_movie, |g| Cell::Money(g.value)),
);

pub const STATUS_DISTRIBUTION: PanelDef = movie_panel(
    "movie_status_distribution",
    "Status distribution",
    &["status", "bookings", "share"],
    |s, f| {
        let (by, matched) = grouped(s, f, by_status);
        Rows {
            rows: by
                .into_iter()
                .map(|(k, g)| {
                    vec![
                        Cell::Text(k),
                        Cell::Int(g.bookings),
                        Cell::Number(ratio(g.bookings, matched as i64)),
                    ]
                })
                .collect(),
            matched,
        }
    },
);
