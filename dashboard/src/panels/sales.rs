//! The ticket-sales panels: key figures, revenue by category, bookings by hour (all from
//! `gold/booking_funnel`), the payment mix and the top events.

use std::collections::BTreeMap;

use super::{Cell, NO_GOLD, PanelDef, Rows, ratio};
use crate::filters::{DEFAULT_LIMIT, Filters};
use crate::snapshot::Snapshot;
use crate::snapshot::rows::FunnelRow;

const DATES_AND_CATEGORY: &[&str] = &["from", "to", "category"];

/// The funnel rows that pass the date and category filters.
fn funnel<'a>(s: &'a Snapshot, f: &'a Filters) -> impl Iterator<Item = &'a FunnelRow> {
    s.funnel
        .iter()
        .filter(|r| f.date_ok(r.date) && f.category_ok(r.category.as_deref()))
}

fn has_funnel(s: &Snapshot) -> bool {
    !s.funnel.is_empty()
}

/// A panel over `gold/booking_funnel`: dates and category apply.
const fn funnel_panel(
    name: &'static str,
    title: &'static str,
    columns: &'static [&'static str],
    build: fn(&Snapshot, &Filters) -> Rows,
) -> PanelDef {
    PanelDef {
        name,
        title,
        applies: DATES_AND_CATEGORY,
        columns,
        has_data: has_funnel,
        no_data: NO_GOLD,
        build,
    }
}

/// Sums of the funnel's measures.
#[derive(Default)]
struct Totals {
    rows: usize,
    bookings: i64,
    paid: i64,
    seats_sold: i64,
    revenue: i128,
    attempts: i64,
    failed: i64,
}

impl Totals {
    fn add(&mut self, r: &FunnelRow) {
        self.rows += 1;
        self.bookings += r.bookings;
        self.paid += r.paid;
        self.seats_sold += r.seats_sold;
        self.revenue += r.revenue;
        self.attempts += r.payment_attempts;
        self.failed += r.failed_payments;
    }
}

pub const KPIS: PanelDef = funnel_panel(
    "kpis",
    "Key figures",
    &[
        "bookings",
        "paid",
        "seats_sold",
        "revenue",
        "conversion_rate",
        "payment_attempts",
        "failed_payments",
        "failed_payment_rate",
    ],
    |s, f| {
        let mut t = Totals::default();
        funnel(s, f).for_each(|r| t.add(r));
        Rows {
            rows: vec![vec![
                Cell::Int(t.bookings),
                Cell::Int(t.paid),
                Cell::Int(t.seats_sold),
                Cell::Money(t.revenue),
                Cell::Number(ratio(t.paid, t.bookings)),
                Cell::Int(t.attempts),
                Cell::Int(t.failed),
                Cell::Number(ratio(t.failed, t.attempts)),
            ]],
            matched: t.rows,
        }
    },
);

pub const REVENUE_BY_CATEGORY: PanelDef = funnel_panel(
    "revenue_by_category",
    "Revenue by category",
    &["event_category", "revenue", "seats_sold", "paid"],
    |s, f| {
        let mut by: BTreeMap<Option<String>, Totals> = BTreeMap::new();
        funnel(s, f).for_each(|r| by.entry(r.category.clone()).or_default().add(r));
        let matched = by.values().map(|t| t.rows).sum();
        let mut rows: Vec<_> = by.into_iter().collect();
        rows.sort_by(|a, b| b.1.revenue.cmp(&a.1.revenue).then(a.0.cmp(&b.0)));
        Rows {
            rows: rows
                .into_iter()
                .map(|(c, t)| {
                    vec![
                        Cell::Text(c),
                        Cell::Money(t.revenue),
                        Cell::Int(t.seats_sold),
                        Cell::Int(t.paid),
                    ]
                })
                .collect(),
            matched,
        }
    },
);

pub const BOOKINGS_BY_HOUR: PanelDef = funnel_panel(
    "bookings_by_hour",
    "Bookings by hour of day (UTC)",
    &["booking_hour", "bookings", "paid"],
    |s, f| {
        let mut hours = [(0i64, 0i64); 24];
        let mut matched = 0;
        for r in funnel(s, f) {
            matched += 1;
            if let Some(h) = r
                .hour
                .and_then(|h| usize::try_from(h).ok())
                .filter(|h| *h < 24)
            {
                hours[h].0 += r.bookings;
                hours[h].1 += r.paid;
            }
        }
        Rows {
            rows: (0..24)
                .map(|h| {
                    vec![
                        Cell::Int(h as i64),
                        Cell::Int(hours[h].0),
                        Cell::Int(hours[h].1),
                    ]
                })
                .collect(),
            matched,
        }
    },
);

pub const PAYMENT_MIX: PanelDef = PanelDef {
    name: "payment_mix",
    title: "Payment mix (all time)",
    applies: &[],
    columns: &[
        "payment_method",
        "payment_type",
        "attempts",
        "succeeded",
        "failed",
        "success_rate",
        "amount",
    ],
    has_data: |s| !s.payments.is_empty(),
    no_data: NO_GOLD,
    build: |s, _| {
        let mut rows: Vec<_> = s.payments.iter().collect();
        rows.sort_by(|a, b| b.attempts.cmp(&a.attempts).then(a.method.cmp(&b.method)));
        Rows {
            matched: rows.len(),
            rows: rows
                .into_iter()
                .map(|p| {
                    vec![
                        Cell::Text(p.method.clone()),
                        Cell::Text(p.kind.clone()),
                        Cell::Int(p.attempts),
                        Cell::Int(p.succeeded),
                        Cell::Int(p.failed),
                        Cell::Number(p.success_rate),
                        Cell::Money(p.amount),
                    ]
                })
                .collect(),
        }
    },
};

pub const TOP_EVENTS: PanelDef = PanelDef {
    name: "top_events",
    title: "Top events by revenue, with occupancy (all dates)",
    applies: &["category", "limit"],
    columns: &[
        "event_id",
        "event_name",
        "event_category",
        "orders",
        "seats_sold",
        "revenue",
        "capacity",
        "occupancy",
    ],
    has_data: |s| !s.events.is_empty(),
    no_data: NO_GOLD,
    build: |s, f| {
        let mut events: Vec<_> = s
            .events
            .iter()
            .filter(|e| f.category_ok(e.category.as_deref()))
            .collect();
        let matched = events.len();
        events.sort_by(|a, b| b.revenue.cmp(&a.revenue).then(a.event_id.cmp(&b.event_id)));
        events.truncate(f.limit.unwrap_or(DEFAULT_LIMIT));
        let rows = events
            .into_iter()
            .map(|e| {
                let seats = s.occupancy.iter().find(|o| o.event_id == e.event_id);
                vec![
                    Cell::Text(e.event_id.clone()),
                    Cell::Text(e.event_name.clone()),
                    Cell::Text(e.category.clone()),
                    Cell::Int(e.orders),
                    Cell::Int(e.seats_sold),
                    Cell::Money(e.revenue),
                    seats
                        .and_then(|o| o.capacity)
                        .map_or(Cell::Number(None), Cell::Int),
                    Cell::Number(seats.and_then(|o| o.occupancy)),
                ]
            })
            .collect();
        Rows { rows, matched }
    },
};
