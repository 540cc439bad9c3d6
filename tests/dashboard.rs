//! The dashboard as its users see it: `boxoffice dashboard` on a lake `up` filled, driven in a
//! real headless Chromium (tests/common/browser.rs). The page's KPI cards equal `boxoffice sql`
//! over the same Gold table, unfiltered and filtered from the page and from its URL; an empty lake
//! says how to fill it; bad filters get a 400 that names them; every Gold table opens in Power BI.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use boxoffice_lake::{TableDef, compatibility_problems, read_rows, utc_timestamp};
use common::browser::Browser;
use common::{local, on, run_ok, sql_rows};
use deltalake::arrow::datatypes::DataType as ArrowType;
use deltalake::kernel::DataType as DeltaType;
use serde_json::{Value, json};
use tempfile::TempDir;

/// The longest the page may take to reach a state.
const WAIT: Duration = Duration::from_secs(30);

/// A short `up`: unpaced, so a few seconds of wall time; 20,000 events at 0.25 per simulated
/// second span about 22 simulated hours from noon, so Gold gets two booking dates and every
/// category. Its job cycles also run the cdc simulator (movie bookings) and batch_load (the event
/// catalog `batch seed` copies, for gold.event_occupancy). No dashboard: never bind port 8080.
const UP: &[&str] = &[
    "up",
    "--no-dashboard",
    "--fast",
    "--count",
    "20000",
    "--rate",
    "0.25",
    "--seed",
    "11",
    "--start",
    "2026-11-20T12:00:00Z",
    "--job-interval",
    "1s",
];

/// A second, later `up` on the same lake, while the page is open.
const MORE: &[&str] = &[
    "up",
    "--no-dashboard",
    "--fast",
    "--count",
    "4000",
    "--rate",
    "0.25",
    "--seed",
    "12",
    "--start",
    "2026-11-22T12:00:00Z",
    "--job-interval",
    "1s",
];

/// A lake `up` filled (at `<dir>/lake`), shared by the tests running at the same time and removed
/// after the last of them: one `up` for the whole file unless its tests run one by one.
fn filled_lake() -> Arc<TempDir> {
    static SHARED: Mutex<Weak<TempDir>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(dir) = shared.upgrade() {
        return dir;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    run_ok(on(&lake).args(["batch", "seed"]));
    run_ok(on(&lake).args(UP));
    let dir = Arc::new(dir);
    *shared = Arc::downgrade(&dir);
    dir
}

/// `boxoffice dashboard --port 0 --refresh 1s` on a lake, killed when dropped.
struct Dashboard {
    child: Child,
    /// `http://127.0.0.1:<port>`, from its `serving` line.
    base: String,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dashboard {
    fn start(lake: &Path) -> Dashboard {
        let mut child = on(lake)
            .args(["dashboard", "--port", "0", "--refresh", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("boxoffice dashboard starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut dashboard = Dashboard {
            child,
            base: String::new(),
        };
        // Every stderr line goes over the channel (until nobody listens), so the pipe never fills.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut raw = Vec::new();
            while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
                let _ = tx.send(String::from_utf8_lossy(&raw).trim_end().to_string());
                raw.clear();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while dashboard.base.is_empty() {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => match line.split_once("boxoffice dashboard: serving ") {
                    Some((_, rest)) => {
                        let url = rest.split_whitespace().next().unwrap_or_default();
                        dashboard.base = url.trim_end_matches('/').to_string();
                    }
                    None => seen.push(line),
                },
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no `boxoffice dashboard: serving` line within 60 s; stderr:\n{}",
                    seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "boxoffice dashboard exited ({:?}); stderr:\n{}",
                    dashboard.child.try_wait(),
                    seen.join("\n")
                ),
            }
        }
        assert!(
            dashboard.base.starts_with("http://127.0.0.1:"),
            "serves on 127.0.0.1 only: {}",
            dashboard.base
        );
        dashboard
    }
}

/// The KPI cards, as the page shows them or as `boxoffice sql` computes them.
#[derive(Debug)]
struct Kpis {
    bookings: i64,
    seats_sold: i64,
    revenue_cents: i64,
    conversion_rate: Option<f64>,
    failed_payment_rate: Option<f64>,
}

/// The cells of one `boxoffice sql --format csv` row (no value here holds a comma).
fn cells(row: &str) -> Vec<String> {
    row.split(',')
        .map(|c| c.trim_matches('"').to_string())
        .collect()
}

/// An integer cell; NULL (no rows) is 0.
fn int(cell: &str) -> i64 {
    if cell.is_empty() {
        return 0;
    }
    cell.parse()
        .unwrap_or_else(|e| panic!("{cell:?} is not an integer: {e}"))
}

/// A decimal cell (`1234.5`, `1234.56`) in cents, exactly; NULL is 0.
fn decimal_cents(cell: &str) -> i64 {
    let (negative, digits) = match cell.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cell),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(fraction.len() <= 2, "{cell:?} has more than 2 decimals");
    let cents = int(whole) * 100 + int(&format!("{fraction:0<2}"));
    if negative { -cents } else { cents }
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    if whole > 0 {
        Some(part as f64 / whole as f64)
    } else {
        None
    }
}

fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The KPIs over gold.booking_funnel, `filter` being empty or ` WHERE ...`.
fn expected_kpis(lake: &Path, filter: &str) -> Kpis {
    let rows = sql_rows(
        lake,
        &format!(
            "SELECT CAST(sum(bookings) AS BIGINT), CAST(sum(paid) AS BIGINT), \
             CAST(sum(seats_sold) AS BIGINT), CAST(sum(revenue) AS VARCHAR), \
             CAST(sum(payment_attempts) AS BIGINT), CAST(sum(failed_payments) AS BIGINT) \
             FROM gold.booking_funnel{filter}"
        ),
    );
    let c = cells(&rows[0]);
    let (bookings, paid, attempts, failed) = (int(&c[0]), int(&c[1]), int(&c[4]), int(&c[5]));
    Kpis {
        bookings,
        seats_sold: int(&c[2]),
        revenue_cents: decimal_cents(&c[3]),
        conversion_rate: ratio(paid, bookings),
        failed_payment_rate: ratio(failed, attempts),
    }
}

/// A `data-value` READ_PAGE collected (`group` kpis or movie): String(raw JSON number), "" for
/// null.
fn data_value<'a>(page: &'a Value, group: &str, key: &str) -> &'a str {
    page[group][key]
        .as_str()
        .unwrap_or_else(|| panic!("no data-value for {group} {key}: {page}"))
}

fn page_number(page: &Value, group: &str, key: &str) -> Option<f64> {
    let v = data_value(page, group, key);
    (!v.is_empty()).then(|| {
        v.parse()
            .unwrap_or_else(|e| panic!("{group} {key} = {v:?}: {e}"))
    })
}

fn page_int(page: &Value, group: &str, key: &str) -> i64 {
    let v = data_value(page, group, key);
    v.parse()
        .unwrap_or_else(|e| panic!("{group} {key} = {v:?} is not an integer: {e}"))
}

fn page_cents(page: &Value, group: &str, key: &str) -> i64 {
    let v = page_number(page, group, key).unwrap_or_else(|| panic!("{group} {key} is empty"));
    (v * 100.0).round() as i64
}

fn page_kpis(page: &Value) -> Kpis {
    Kpis {
        bookings: page_int(page, "kpis", "bookings"),
        seats_sold: page_int(page, "kpis", "seats_sold"),
        revenue_cents: page_cents(page, "kpis", "revenue"),
        conversion_rate: page_number(page, "kpis", "conversion_rate"),
        failed_payment_rate: page_number(page, "kpis", "failed_payment_rate"),
    }
}

fn assert_kpis(page: &Value, expected: &Kpis, what: &str) {
    let shown = page_kpis(page);
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        (None, None) => true,
        _ => false,
    };
    assert!(
        shown.bookings == expected.bookings
            && shown.seats_sold == expected.seats_sold
            && shown.revenue_cents == expected.revenue_cents
            && close(shown.conversion_rate, expected.conversion_rate)
            && close(shown.failed_payment_rate, expected.failed_payment_rate),
        "{what}: the page shows {shown:?}, boxoffice sql gives {expected:?}"
    );
}

/// Movie bookings and cancellations, as `movie_kpis` counts them.
const MOVIE_COUNTS: &str = "SELECT CAST(count(*) AS BIGINT), \
    CAST(sum(CASE WHEN status = 'CANCELLED' THEN 1 ELSE 0 END) AS BIGINT) \
    FROM silver.movie_bookings_filtered";

/// Tickets sold and revenue (ticket_count x ticket_price) of BOOKED and COMPLETED bookings.
const MOVIE_SOLD: &str = "SELECT CAST(sum(ticket_count) AS BIGINT), \
    CAST(sum(ticket_count * ticket_price) AS VARCHAR) \
    FROM silver.movie_bookings_filtered WHERE status IN ('BOOKED', 'COMPLETED')";

/// Filters, KPI `data-value`s and the body's refresh state, read at one instant.
const READ_PAGE: &str = "(() => {
  const value = id => { const el = document.getElementById(id); return el ? el.getAttribute('data-value') : null; };
  const d = document.body.dataset;
  return {
    query: (d.query || '').replace(/^\\?/, ''),
    refreshes: Number(d.refreshes || 0),
    state: d.state || null,
    kpis: Object.fromEntries(['bookings', 'seats_sold', 'revenue', 'conversion_rate', 'failed_payment_rate']
      .map(k => [k, value('kpi-' + k)])),
    movie: Object.fromEntries(['total_bookings', 'total_tickets_sold', 'total_revenue', 'total_cancellations']
      .map(k => [k, value('movie-kpi-' + k)])),
    filters: Object.fromEntries(['from', 'to', 'category', 'status']
      .map(k => [k, document.getElementById('filter-' + k)?.value ?? null])),
    emptyHidden: document.getElementById('empty-state')?.hasAttribute('hidden') ?? null,
  };
})()";

/// Waits for a finished refresh (after `after` of them) under exactly `query`.
async fn wait_refreshed(browser: &mut Browser, query: &str, after: u64) -> Value {
    let condition = format!(
        "document.body.dataset.state === 'ready' && Number(document.body.dataset.refreshes || 0) > {after} \
         && (document.body.dataset.query || '').replace(/^\\?/, '') === {}",
        json!(query)
    );
    browser.wait_for(&condition, WAIT).await;
    let page = browser.eval(READ_PAGE).await;
    assert_eq!(page["query"], json!(query), "{page}");
    page
}

/// Sets filter elements (`(id, value)`) and fires `change` on each, as a user does.
async fn set_filters(browser: &mut Browser, filters: &[(&str, &str)]) -> u64 {
    let before = browser.eval(READ_PAGE).await["refreshes"]
        .as_u64()
        .expect("refreshes");
    let js = format!(
        "(() => {{
  const filters = {};
  for (const [id, value] of filters) document.getElementById(id).value = value;
  for (const [id] of filters) document.getElementById(id).dispatchEvent(new Event('change', {{bubbles: true}}));
  return filters.map(([id]) => document.getElementById(id).value);
}})()",
        json!(filters)
    );
    let set = browser.eval(&js).await;
    let wanted: Vec<&str> = filters.iter().map(|(_, v)| *v).collect();
    assert_eq!(set, json!(wanted), "the filter elements took the values");
    before
}

/// Every resource the page loaded came from the dashboard itself.
async fn assert_only_local_requests(browser: &mut Browser, base: &str) {
    let urls = browser
        .eval(
            "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))\
             .map(e => e.name)",
        )
        .await;
    let urls: Vec<&str> = urls
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        urls.iter().any(|u| u.starts_with(&format!("{base}/api/"))),
        "the page called no API: {urls:?}"
    );
    for url in &urls {
        assert!(
            url.starts_with(&format!("{base}/"))
                || url.starts_with("data:")
                || url.starts_with("blob:"),
            "the page requested {url}, outside {base}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_the_gold_kpis_and_follows_a_filter() {
    let dir = tokio::task::block_in_place(filled_lake);
    let lake = dir.path().join("lake");
    let dashboard = Dashboard::start(&lake);
    let base = dashboard.base.clone();
    let mut browser = Browser::launch().await;
    browser.navigate(&format!("{base}/")).await;

    // Unfiltered: the whole of gold.booking_funnel.
    let page = wait_refreshed(&mut browser, "", 0).await;
    assert_eq!(
        page["emptyHidden"],
        json!(true),
        "data, so no empty state: {page}"
    );
    let all = expected_kpis(&lake, "");
    assert!(all.bookings > 0, "up filled gold.booking_funnel: {all:?}");
    assert_kpis(&page, &all, "no filter");

    // Movie KPIs: silver.movie_bookings_filtered, which up's cdc cycles wrote.
    let movies = local(&lake)
        .open_table(&boxoffice_jobs::cdc::tables::MOVIE_BOOKINGS_FILTERED)
        .await
        .expect("open silver.movie_bookings_filtered");
    assert!(movies.is_some(), "up wrote silver.movie_bookings_filtered");
    {
        let counts = cells(&sql_rows(&lake, MOVIE_COUNTS)[0]);
        let sold = cells(&sql_rows(&lake, MOVIE_SOLD)[0]);
        let expected = (
            int(&counts[0]),
            int(&sold[0]),
            decimal_cents(&sold[1]),
            int(&counts[1]),
        );
        let shown = (
            page_int(&page, "movie", "total_bookings"),
            page_int(&page, "movie", "total_tickets_sold"),
            page_cents(&page, "movie", "total_revenue"),
            page_int(&page, "movie", "total_cancellations"),
        );
        assert_eq!(
            shown, expected,
            "movie KPIs (bookings, tickets, revenue cents, cancellations): page vs boxoffice sql"
        );
    }

    // Every panel offers its CSV, from the dashboard itself, under a panel name the API knows.
    let panels = browser
        .eval(
            "fetch('/api/filters').then(r => r.json()).then(f => ({known: f.panels, \
             shown: [...document.querySelectorAll('section.panel')].map(s => \
             ({id: s.id, csv: s.querySelector('a.csv') ? s.querySelector('a.csv').href : null}))}))",
        )
        .await;
    let known = panels["known"].as_array().expect("/api/filters panels");
    let shown = panels["shown"].as_array().expect("sections");
    assert!(!shown.is_empty(), "no section.panel: {panels}");
    for section in shown {
        let id = section["id"].as_str().unwrap_or_default();
        let name = id
            .strip_prefix("panel-")
            .unwrap_or_else(|| panic!("section id {id:?}"));
        assert!(
            known.contains(&json!(name)),
            "{id} is no API panel: {panels}"
        );
        let csv = section["csv"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} has no a.csv"));
        assert!(
            csv.starts_with(&format!("{base}/")) && csv.contains("format=csv"),
            "{id}: a.csv points at {csv}"
        );
    }

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("dashboard.png");
    browser.screenshot(&shot).await;
    let png = std::fs::read(&shot).expect("read the screenshot");
    // A blank 1400-pixel-wide page is about 12 KB.
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{}: {} bytes",
        shot.display(),
        png.len()
    );
    let width = u32::from_be_bytes(png[16..20].try_into().expect("IHDR width"));
    assert!(width >= 1000, "screenshot {width} pixels wide");
    println!("dashboard screenshot: {}", shot.display());

    // One category (with fewer bookings than all of them), chosen in the page's select.
    let category = sql_rows(
        &lake,
        "SELECT event_category AS c, CAST(sum(bookings) AS BIGINT) AS n FROM gold.booking_funnel \
         WHERE event_category IS NOT NULL GROUP BY c ORDER BY n DESC, c",
    )
    .iter()
    .filter_map(|row| row.rsplit_once(','))
    .find(|(c, n)| {
        let n = int(n);
        n > 0 && n < all.bookings && c.chars().all(char::is_alphanumeric)
    })
    .map(|(c, _)| c.to_string())
    .expect("a category with some but not all bookings");
    browser
        .wait_for(
            &format!(
                "[...document.querySelectorAll('#filter-category option')].some(o => o.value === {})",
                json!(category)
            ),
            WAIT,
        )
        .await;
    let before = set_filters(&mut browser, &[("filter-category", category.as_str())]).await;
    let page = wait_refreshed(&mut browser, &format!("category={category}"), before).await;
    let in_category = format!(" WHERE event_category = {}", sql_quote(&category));
    let one = expected_kpis(&lake, &in_category);
    assert_kpis(&page, &one, &format!("category {category}"));
    assert!(
        page_int(&page, "kpis", "bookings") < all.bookings,
        "filtering by {category} lowered bookings"
    );

    // And one booking date of that category.
    let dates = sql_rows(
        &lake,
        &format!(
            "SELECT CAST(booking_date AS VARCHAR) AS d, CAST(sum(bookings) AS BIGINT) AS n \
             FROM gold.booking_funnel{in_category} AND booking_date IS NOT NULL GROUP BY d ORDER BY d"
        ),
    );
    assert!(dates.len() >= 2, "up spans two booking dates: {dates:?}");
    let (date, _) = dates[0].split_once(',').expect("date,bookings");
    let before = set_filters(&mut browser, &[("filter-from", date), ("filter-to", date)]).await;
    let query = format!("from={date}&to={date}&category={category}");
    let page = wait_refreshed(&mut browser, &query, before).await;
    let on_date = format!(
        "{in_category} AND booking_date >= DATE {d} AND booking_date <= DATE {d}",
        d = sql_quote(date)
    );
    let day = expected_kpis(&lake, &on_date);
    assert_kpis(&page, &day, &format!("category {category} on {date}"));
    assert!(
        day.bookings > 0 && day.bookings < one.bookings,
        "{day:?} vs {one:?}"
    );
    assert_only_local_requests(&mut browser, &base).await;

    // The same filters from the page's URL.
    browser.navigate(&format!("{base}/?{query}")).await;
    let page = wait_refreshed(&mut browser, &query, 0).await;
    assert_eq!(
        page["filters"],
        json!({"from": date, "to": date, "category": category, "status": ""}),
        "the filter elements show the URL's filters"
    );
    assert_kpis(&page, &day, &format!("{query} from the URL"));
    assert_only_local_requests(&mut browser, &base).await;

    // Live: more events land and go through the jobs; the open page follows without a reload.
    browser.navigate(&format!("{base}/")).await;
    let page = wait_refreshed(&mut browser, "", 0).await;
    assert_kpis(&page, &all, "before more events");
    let marker = browser.eval("window.notReloaded = true").await;
    assert_eq!(marker, json!(true));
    tokio::task::block_in_place(|| {
        run_ok(on(&lake).args(MORE));
    });
    let more = expected_kpis(&lake, "");
    assert!(more.bookings > all.bookings, "{more:?} vs {all:?}");
    browser
        .wait_for(
            &format!(
                "document.getElementById('kpi-bookings').getAttribute('data-value') === {}",
                json!(more.bookings.to_string())
            ),
            WAIT,
        )
        .await;
    let page = browser.eval(READ_PAGE).await;
    assert_kpis(&page, &more, "after more events, without a reload");
    assert_eq!(
        browser.eval("window.notReloaded === true").await,
        json!(true),
        "the page refreshed in place"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_lake_shows_the_empty_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dashboard = Dashboard::start(dir.path());
    let mut browser = Browser::launch().await;
    browser.navigate(&format!("{}/", dashboard.base)).await;
    browser
        .wait_for(
            "document.body.dataset.state === 'empty' && Number(document.body.dataset.refreshes || 0) >= 1",
            WAIT,
        )
        .await;
    let shown = browser
        .eval(
            "(() => { const el = document.getElementById('empty-state'); const error = document.getElementById('error'); \
             return {hidden: el.hasAttribute('hidden'), display: getComputedStyle(el).display, text: el.innerText, \
             error: !error || error.hidden || error.innerText.trim() === ''}; })()",
        )
        .await;
    assert_eq!(shown["hidden"], json!(false), "{shown}");
    assert_ne!(shown["display"], json!("none"), "{shown}");
    let text = shown["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("boxoffice up"),
        "the empty state says how to fill the lake: {text}"
    );
    assert_eq!(shown["error"], json!(true), "no data is no error: {shown}");
}

/// Status and body of a GET.
async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_filters_get_a_400_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dashboard = Dashboard::start(dir.path());
    let base = &dashboard.base;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let deadline = Instant::now() + WAIT;
    while get(&client, &format!("{base}/api/health")).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "/api/health not 200 within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (path, names) in [
        ("/api/kpis?from=yesterday", &["from"][..]),
        (
            "/api/kpis?from=2026-11-10&to=2026-11-01",
            &["from", "to"][..],
        ),
        ("/api/kpis?category=Opera", &["category"][..]),
        ("/api/movie_kpis?status=PAID", &["status"][..]),
        ("/api/top_events?limit=0", &["limit"][..]),
        ("/api/kpis?colour=red", &["colour"][..]),
        ("/api/kpis?format=xml", &["format"][..]),
    ] {
        let (status, body) = get(&client, &format!("{base}{path}")).await;
        assert_eq!(status, 400, "{path}: {body}");
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: the 400 is not JSON ({e}): {body}"));
        let error = json["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{path}: no error message: {body}");
        for name in names {
            assert!(
                error.contains(*name),
                "{path}: the error does not name {name}: {error}"
            );
        }
    }

    let (status, body) = get(&client, &format!("{base}/api/nope")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("kpis"), "the 404 lists the panels: {body}");

    for (panel, columns) in [
        (
            "kpis",
            "bookings,paid,seats_sold,revenue,conversion_rate,payment_attempts,failed_payments,failed_payment_rate",
        ),
        ("bookings_by_hour", "booking_hour,bookings,paid"),
        (
            "movie_kpis",
            "total_bookings,total_tickets_sold,total_revenue,total_cancellations",
        ),
    ] {
        let url = format!("{base}/api/{panel}?format=csv");
        let response = client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status().as_u16(), 200, "{url}");
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let disposition = header(reqwest::header::CONTENT_DISPOSITION);
        assert!(
            content_type.starts_with("text/csv"),
            "{url}: {content_type}"
        );
        assert!(
            disposition.contains("attachment") && disposition.contains(&format!("{panel}.csv")),
            "{url}: {disposition}"
        );
        let csv = response.text().await.expect("csv body");
        assert_eq!(csv.lines().next(), Some(columns), "{url}:\n{csv}");
        // The same columns as the JSON answer.
        let (status, body) = get(&client, &format!("{base}/api/{panel}")).await;
        assert_eq!(status, 200, "{body}");
        let json: Value = serde_json::from_str(&body).expect("json");
        let names: Vec<&str> = json["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(names.join(","), columns, "{panel}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_gold_table_opens_in_power_bi() {
    let dir = tokio::task::block_in_place(filled_lake);
    let lake = local(&dir.path().join("lake"));
    let mut defs: Vec<&TableDef> = boxoffice_jobs::gold::tables::TABLES.to_vec();
    defs.push(&boxoffice_jobs::cdc::tables::MOVIE_BOOKING_INSIGHTS);
    let names: Vec<&str> = defs.iter().map(|d| d.name).collect();
    assert_eq!(
        names,
        [
            "event_performance",
            "sales_by_category_hour",
            "payment_mix",
            "conversion",
            "event_occupancy",
            "booking_funnel",
            "movie_booking_insights"
        ]
    );
    for def in defs {
        let name = def.qualified_name();
        let table = lake
            .open_table(def)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name} was not created by up"));
        let problems = compatibility_problems(&table).expect("inspect");
        assert!(problems.is_empty(), "{name}: {problems:?}");
        let snapshot = table.snapshot().expect("snapshot");
        let protocol = snapshot.protocol();
        assert_eq!(
            (protocol.min_reader_version(), protocol.min_writer_version()),
            (1, 2),
            "{name}: protocol"
        );
        let config = snapshot.metadata().configuration();
        for key in ["delta.enableDeletionVectors", "delta.columnMapping.mode"] {
            if let Some(value) = config.get(key) {
                assert!(
                    value == "false" || value == "none",
                    "{name}: {key} = {value}"
                );
            }
        }
        // Declared timestamps are Delta `timestamp` (zoned), and none is `timestamp_ntz`.
        let declared = def.arrow_schema();
        let timestamps: Vec<String> = declared
            .fields()
            .iter()
            .filter(|f| matches!(f.data_type(), ArrowType::Timestamp(..)))
            .map(|f| f.name().clone())
            .collect();
        assert!(!timestamps.is_empty(), "{name} declares no timestamp");
        for field in snapshot.schema().fields() {
            assert_ne!(
                *field.data_type(),
                DeltaType::TIMESTAMP_NTZ,
                "{name}.{}",
                field.name()
            );
            if timestamps.contains(field.name()) {
                assert_eq!(
                    *field.data_type(),
                    DeltaType::TIMESTAMP,
                    "{name}.{}",
                    field.name()
                );
            }
        }
        // And the data files read back as microseconds in UTC.
        let batches = read_rows(&table).await.expect("read");
        assert!(
            batches.iter().map(|b| b.num_rows()).sum::<usize>() > 0,
            "{name} is empty"
        );
        for batch in &batches {
            let schema = batch.schema();
            for column in &timestamps {
                let field = schema
                    .field_with_name(column)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(field.data_type(), &utc_timestamp(), "{name}.{column}");
            }
            for field in schema.fields() {
                if let ArrowType::Timestamp(..) = field.data_type() {
                    assert_eq!(
                        field.data_type(),
                        &utc_timestamp(),
                        "{name}.{}",
                        field.name()
                    );
                }
            }
        }
    }
}

#[test]
fn a_power_query_file_reads_every_gold_table() {
    let mut tables: Vec<&str> = boxoffice_jobs::gold::tables::TABLES
        .iter()
        .map(|d| d.name)
        .collect();
    tables.push(boxoffice_jobs::cdc::tables::MOVIE_BOOKING_INSIGHTS.name);
    let check = Path::new(env!("CARGO_MANIFEST_DIR")).join("powerbi/check.py");
    let out = std::process::Command::new("python3")
        .arg(&check)
        .args(&tables)
        .output()
        .expect("python3 runs (scripts/test installs it)");
    assert!(
        out.status.success(),
        "powerbi/ does not match the Gold tables {tables:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
