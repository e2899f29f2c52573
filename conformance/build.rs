//! Which real peers this machine has, decided once per build, so that a
//! test whose peer is missing is reported by `cargo test` as *ignored*, with
//! the reason and how to install the peer, instead of passing without
//! having run.
//!
//! The rule, the same for every peer test in the workspace:
//! - `WSMACHINE_REQUIRE_PEERS=1` (CI sets it in `.ci/run`): nothing is
//!   ignored; a missing peer fails its test.
//! - Otherwise a test is ignored when its peer's program is absent: `python3`
//!   (Python `websockets` and zlib), `node` and `npm` (Node `ws`), Chromium.
//!   What a test can install itself without root (the venv, the npm
//!   packages under `target/`) is not a reason to ignore it: if that install
//!   fails, the test fails.
//! - The Autobahn suite (several minutes) runs when `WSMACHINE_AUTOBAHN=1`
//!   or `WSMACHINE_REQUIRE_PEERS=1`, and is ignored otherwise.
//!
//! Each condition becomes a `cfg` the tests use in
//! `#[cfg_attr(missing_chromium, ignore = "...")]`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CFGS: [&str; 4] = [
    "missing_python",
    "missing_node",
    "missing_chromium",
    "autobahn_off",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "WSMACHINE_REQUIRE_PEERS",
        "WSMACHINE_AUTOBAHN",
        "CHROMIUM",
        "PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    for cfg in CFGS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    if std::env::var("WSMACHINE_REQUIRE_PEERS").as_deref() == Ok("1") {
        return;
    }
    let mut missing = Vec::new();
    if !runs("python3") {
        missing.push("missing_python");
    }
    if !runs("node") || !runs("npm") {
        missing.push("missing_node");
    }
    if chromium().is_none() {
        missing.push("missing_chromium");
    }
    if std::env::var("WSMACHINE_AUTOBAHN").as_deref() != Ok("1") {
        missing.push("autobahn_off");
    }
    for cfg in &missing {
        println!("cargo:rustc-cfg={cfg}");
    }
    if missing.iter().any(|m| m.starts_with("missing_")) {
        // Installing a peer changes no environment variable but adds a file
        // to a directory of PATH (or /usr/bin): look again when one changes.
        let mut dirs: Vec<PathBuf> = vec!["/usr/bin".into()];
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
    }
}

/// Whether `program --version` runs and succeeds.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Chromium where the browser test looks for it (`$CHROMIUM`,
/// `/usr/bin/chromium`, `chromium` or `chromium-browser` in `PATH`).
fn chromium() -> Option<PathBuf> {
    let mut cands: Vec<PathBuf> = Vec::new();
    if let Some(c) = std::env::var_os("CHROMIUM") {
        cands.push(c.into());
    }
    cands.push("/usr/bin/chromium".into());
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            cands.push(dir.join("chromium"));
            cands.push(dir.join("chromium-browser"));
        }
    }
    cands.into_iter().find(|c| Path::new(c).is_file())
}
