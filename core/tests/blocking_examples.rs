//! Runs the two std::net examples against each other: the blocking echo
//! server and the blocking client, over loopback, as a user would.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Examples are built by `cargo test` next to the test binaries' directory.
fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Kills the child it holds when dropped, so a failing test leaves nothing running.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn blocking_client_talks_to_blocking_echo_server() {
    let server_bin = example("blocking_echo_server");
    let client_bin = example("blocking_client");
    assert!(
        server_bin.exists() && client_bin.exists(),
        "examples not built at {server_bin:?}"
    );
    let mut server = Guard(
        Command::new(&server_bin)
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start server"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let mut client = Guard(
        Command::new(&client_bin)
            .arg(format!("{url}/"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start client"),
    );
    let long = "κόσμε ".repeat(5000); // compressed on the way, if negotiated
    client
        .0
        .stdin
        .take()
        .unwrap()
        .write_all(format!("first line\n{long}\nlast\n").as_bytes())
        .unwrap();
    // Bounded wait: the client exits once the close handshake completes.
    let mut status = None;
    for _ in 0..200 {
        if let Some(s) = client.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = status.expect("client did not finish within 10 s");
    let out = std::io::read_to_string(client.0.stdout.take().unwrap()).unwrap();
    let err = std::io::read_to_string(client.0.stderr.take().unwrap()).unwrap();
    assert!(status.success(), "client failed: {err}");
    assert_eq!(out, format!("first line\n{long}\nlast\n"));
}
