//! The Autobahn|Testsuite gate: runs `conformance/autobahn.sh` (tokio echo
//! server and tokio client, all cases; smol and async-std echo servers,
//! sections 1–10; concurrently) when `WSMACHINE_AUTOBAHN=1`, and fails unless
//! every case is OK or INFORMATIONAL. Skipped otherwise (it takes ~10 min).

use std::path::Path;
use std::process::Command;

#[test]
fn autobahn_all_cases_ok() {
    if std::env::var("WSMACHINE_AUTOBAHN").as_deref() != Ok("1") {
        println!(
            "autobahn: skipped. Run it with\n  WSMACHINE_AUTOBAHN=1 cargo test -p wsmachine-conformance \
             --test autobahn -- --nocapture\nor directly: conformance/autobahn.sh [--quick] [--driver]"
        );
        return;
    }
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
