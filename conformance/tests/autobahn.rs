//! The Autobahn|Testsuite gate: runs `conformance/autobahn.sh` (tokio echo
//! server and tokio client, all cases; smol and async-std echo servers,
//! sections 1–10; concurrently) and fails unless every case is OK or
//! INFORMATIONAL. It takes several minutes, so it runs only when
//! `WSMACHINE_AUTOBAHN=1` or `WSMACHINE_REQUIRE_PEERS=1` (CI) was set when
//! the test was built, and is reported as ignored, with that reason,
//! otherwise (see `conformance/build.rs`).

use std::path::Path;
use std::process::Command;

#[test]
#[cfg_attr(
    autobahn_off,
    ignore = "the Autobahn suite takes minutes: WSMACHINE_AUTOBAHN=1 cargo test -p wsmachine-conformance --test autobahn (or conformance/autobahn.sh)"
)]
fn autobahn_all_cases_ok() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("autobahn.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    if std::env::var("WSMACHINE_AUTOBAHN_QUICK").as_deref() == Ok("1") {
        cmd.arg("--quick");
    }
    let status = cmd.status().expect("bash runs autobahn.sh");
    assert!(
        status.success(),
        "autobahn.sh failed ({status}); reports in conformance/reports/"
    );
}
