//! Bundles Chart.js into the binary at build time, so the dashboard loads nothing from the
//! internet: `npm ci` installs the version `web/package-lock.json` pins (integrity-checked)
//! into this build's OUT_DIR, and `src/assets.rs` includes its UMD file.
//!
//! `BOXOFFICE_CHARTJS=/path/to/chart.umd.min.js` uses a file at hand instead (an offline build).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const FILE: &str = "node_modules/chart.js/dist/chart.umd.min.js";

fn main() {
    println!("cargo::rerun-if-changed=web/package.json");
    println!("cargo::rerun-if-changed=web/package-lock.json");
    println!("cargo::rerun-if-env-changed=BOXOFFICE_CHARTJS");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bundled = out.join("chart.umd.min.js");
    let source = match env::var("BOXOFFICE_CHARTJS") {
        Ok(path) => PathBuf::from(path),
        Err(_) => npm_ci(&out.join("npm")),
    };
    if let Err(e) = fs::copy(&source, &bundled) {
        panic!("copying Chart.js from {}: {e}", source.display());
    }
}

/// Installs the pinned packages once per OUT_DIR; returns the path of the UMD build.
fn npm_ci(dir: &Path) -> PathBuf {
    let file = dir.join(FILE);
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let lock = web.join("package-lock.json");
    let stamp = dir.join("package-lock.json");
    if file.exists() && fs::read(&stamp).ok() == fs::read(&lock).ok() {
        return file;
    }
    fs::create_dir_all(dir).expect("creating the npm folder in OUT_DIR");
    for name in ["package.json", "package-lock.json"] {
        fs::copy(web.join(name), dir.join(name)).expect("copying the dashboard's package files");
    }
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let status = Command::new(npm)
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(dir)
        .status();
    match status {
        Ok(s) if s.success() && file.exists() => file,
        Ok(s) => panic!(
            "`npm ci` for the dashboard's Chart.js failed ({s}); the dashboard bundles it from the npm registry at build time. \
             Set BOXOFFICE_CHARTJS=/path/to/chart.umd.min.js to build offline."
        ),
        Err(e) => panic!(
            "running npm ({e}): the dashboard bundles Chart.js from the npm registry at build time. \
             Install Node.js and npm (Debian: apt-get install nodejs npm), or set \
             BOXOFFICE_CHARTJS=/path/to/chart.umd.min.js to build offline."
        ),
    }
}
