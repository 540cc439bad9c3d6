//! The binary against a real Azurite started from npm on a free port: the same commands land
//! the same tables under az://, and `tables` reports them there.

mod common;

use boxoffice_lake::Lake;
use boxoffice_testkit::Azurite;
use common::*;

#[test]
fn up_and_tables_work_on_azurite() {
    let azurite = Azurite::start();
    let work = tempfile::tempdir().expect("tempdir");
    let endpoint = azurite.endpoint();
    let on_azurite = |args: &[&str]| {
        let mut cmd = boxoffice();
        cmd.current_dir(work.path()).args(args).args([
            "--lake",
            "az://lake/e2e",
            "--emulator",
            "--emulator-endpoint",
            &endpoint,
        ]);
        cmd
    };
    run_ok(&mut on_azurite(&[
        "up", "--count", "3000", "--fast", "--seed", "21",
    ]));
    // A second write: the version moves on, the rows add up.
    run_ok(&mut on_azurite(&[
        "up", "--count", "1000", "--fast", "--seed", "22",
    ]));

    let out = run_ok(&mut on_azurite(&["tables", "--json"]));
    let tables: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut total = 0;
    let mut present = Vec::new();
    for t in tables.as_array().expect("array") {
        let name = t["name"].as_str().expect("name");
        let (layer, table) = name.split_once('.').expect("layer.table");
        assert_eq!(t["location"], format!("az://lake/e2e/{layer}/{table}/"));
        if t["state"]["protocol"].is_null() {
            continue; // not created (e.g. no late events in so short a run)
        }
        // The booking service's table has its change data feed on: writer 4.
        let protocol = if name == "ops.raw_movie_bookings" {
            "1/4"
        } else {
            "1/2"
        };
        assert_eq!(t["state"]["protocol"], protocol, "{name}");
        present.push(name.to_string());
        if layer == "bronze" && name != "bronze.movie_booking_cdc_events" {
            total += t["state"]["rows"].as_u64().expect("rows");
        }
    }
    assert_eq!(total, 4000);
    // `up` ran the join and the Gold refresh on Azurite too.
    for name in [
        "silver.bookings_fact",
        "gold.payment_mix",
        "gold.conversion",
        "silver.movie_bookings_filtered",
        "gold.movie_booking_insights",
    ] {
        assert!(present.iter().any(|p| p == name), "{name} in {present:?}");
    }

    let lake = Lake::azurite("az://lake/e2e", &endpoint).expect("lake");
    assert_eq!(assert_no_duplicate_and_no_gap(&lake), 4000);
    // A remote lake keeps its queue log in a local folder of the working directory.
    assert!(work.path().join(".boxoffice/queue").is_dir());
}
