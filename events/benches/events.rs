//! `cargo bench -p boxoffice-events`: generator and validator throughput, single-threaded.
//! A benchmark, not a test: it prints numbers and asserts nothing about speed.

use std::hint::black_box;
use std::time::Instant;

use boxoffice_events::{Generator, GeneratorConfig, Hub, identify, validate};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One way of checking a body: does it pass?
type Check = fn(&str, Option<Hub>) -> bool;

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
    let checks: [(&str, &str, Check); 2] = [
        ("validate", "typed events built", |b, h| {
            validate(b, h).is_ok()
        }),
        ("identify", "what the archiver runs", |b, h| {
            identify(b, h).is_ok()
        }),
    ];
    for (name, what, check) in checks {
        let started = Instant::now();
        let valid = events
            .iter()
            .filter(|e| check(black_box(&e.body), Some(e.hub)))
            .count();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name:<10} {:>9.0} events/s  ({valid} valid of {n}; {what})",
            n as f64 / secs
        );
    }
}
