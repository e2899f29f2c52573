//! Runs every Autobahn testsuite case against a `wstest -m fuzzingserver`.
//!
//! ```text
//! cargo run --release -p wsmachine-tokio --example autobahn_client -- ws://127.0.0.1:9001 wsmachine-tokio
//! ```
//!
//! Fetches `/getCaseCount`, echoes every message of each
//! `/runCase?case=N&agent=A` (with permessage-deflate offered), then asks
//! for `/updateReports?agent=A`.

use std::process::ExitCode;
use std::time::Duration;

use wsmachine_tokio::{CloseCode, Config, ConnectBuilder, Message};

fn config() -> Config {
    Config {
        // Autobahn's largest messages are 16 MiB; keep the default limits
        // but no keepalive noise in the reports.
        ping_interval: None,
        ..Config::with_deflate()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let base = base.trim_end_matches('/').to_owned();
    let agent = args.next().unwrap_or_else(|| "wsmachine-tokio".into());

    let count = match case_count(&base).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("autobahn_client: cannot get the case count from {base}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("running {count} cases as {agent:?}");
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        if let Err(e) = run_case(&url).await {
            // Failing cases are the fuzzingserver's to judge: report, go on.
            eprintln!("case {case}: {e}");
        }
        if case % 50 == 0 {
            eprintln!("{case}/{count}");
        }
    }
    let url = format!("{base}/updateReports?agent={agent}");
    match ConnectBuilder::new(&url).config(config()).connect().await {
        Ok((mut ws, _)) => {
            let _ = ws.close(CloseCode::NORMAL, "").await;
            while ws.recv().await.is_some() {}
        }
        Err(e) => {
            eprintln!("autobahn_client: cannot update the reports: {e}");
            return ExitCode::FAILURE;
        }
    }
    eprintln!("reports updated");
    ExitCode::SUCCESS
}

async fn case_count(base: &str) -> Result<u32, Box<dyn std::error::Error>> {
    let (mut ws, _) = ConnectBuilder::new(format!("{base}/getCaseCount"))
        .config(config())
        .connect()
        .await?;
    let mut count = None;
    while let Some(msg) = ws.recv().await {
        if let Message::Text(t) = msg? {
            count = Some(t.trim().parse()?);
        }
    }
    count.ok_or_else(|| "no case count received".into())
}

async fn run_case(url: &str) -> Result<(), wsmachine_tokio::Error> {
    let (mut ws, _) = ConnectBuilder::new(url)
        .config(config())
        .handshake_timeout(Duration::from_secs(30))
        .connect()
        .await?;
    while let Some(msg) = ws.recv().await {
        match msg {
            Ok(m) => ws.send(m).await?,
            // The core already sent the right Close code; drain to the end.
            Err(_) => continue,
        }
    }
    Ok(())
}
