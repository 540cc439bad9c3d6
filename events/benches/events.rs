//! `cargo bench -p boxoffice-events`: generator and validator throughput, single-threaded.
//! A benchmark, not a test: it prints numbers and asserts nothing about speed.

use std::hint::black_box;
use std::time::Instant;

use boxoffice_events::{Generator, GeneratorConfig, identify, validate};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n = 500_000;
    let config = GeneratorConfig {
        seed: 42,
        rate: 10_000.0,
        ..GeneratorConfig::default()
    };

    let started = Instant::now();
    let mut bytes = 0;
    for e in Generator::new(config.clone()).expect("config").take(n) {
        bytes += e.body.len();
        black_box(&e);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "generator  {:>9.0} events/s  ({:.0} MB/s, {:.0} bytes/event)",
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        bytes as f64 / n as f64
    );

    let events: Vec<_> = Generator::new(config).expect("config").take(n).collect();
    let started = Instant::now();
    let mut valid = 0;
    for e in &events {
        if validate(black_box(&e.body), Some(e.hub)).is_ok() {
            valid += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "validate   {:>9.0} events/s  ({valid} valid of {n}; typed events built)",
        n as f64 / secs
    );

    let started = Instant::now();
    let mut valid = 0;
    for e in &events {
        if identify(black_box(&e.body), Some(e.hub)).is_ok() {
            valid += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "identify   {:>9.0} events/s  ({valid} valid of {n}; what the archiver runs)",
        n as f64 / secs
    );
}
