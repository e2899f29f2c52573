//! Writes the seed corpus: `cargo run -p wsmachine-fuzz --bin gen_seeds -- fuzz/corpus`
//! creates `fuzz/corpus/<target>/seed-<name>` for every seed of
//! [`wsmachine_fuzz::seeds::all`]. With `--features trace` and a second
//! argument (`conformance/traces`), seeds from the byte-trace corpus too.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    #[allow(unused_mut)]
    let mut seeds = wsmachine_fuzz::seeds::all();
    #[cfg(feature = "trace")]
    if let Some(traces) = std::env::args().nth(2) {
        seeds.extend(wsmachine_fuzz::seeds::from_traces(std::path::Path::new(
            &traces,
        ))?);
    }
    for (target, name, bytes) in &seeds {
        let d = dir.join(target);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join(format!("seed-{name}")), bytes)?;
    }
    println!("wrote {} seeds under {}", seeds.len(), dir.display());
    Ok(())
}
