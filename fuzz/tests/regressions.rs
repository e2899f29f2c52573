//! Replays the committed corpus `regressions/<target>/*` and the generated
//! seeds through the same target functions the fuzzers run, under the
//! counting allocator so the memory bounds are checked here too.

use std::path::Path;

use wsmachine_fuzz::{alloc::CountingAlloc, seeds, TARGETS};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn replay_dir(dir: &Path, target: &str, run: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
        return 0;
    };
    let mut files: Vec<_> = entries.map(|e| e.expect("dir entry").path()).collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).expect("read input");
        // Named on failure, by the panic hook's output ordering.
        eprintln!("replaying {}", f.display());
        run(&data);
    }
    files.len()
}

#[test]
fn regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut total = 0;
    for (target, run) in TARGETS {
        total += replay_dir(&root, target, *run);
    }
    assert!(total > 0, "no regression inputs under {}", root.display());
}

#[test]
fn seeds_pass_every_target() {
    for (target, name, bytes) in seeds::all() {
        let (_, run) = TARGETS
            .iter()
            .find(|(t, _)| *t == target)
            .expect("known target");
        eprintln!("seed {target}/{name}");
        run(&bytes);
    }
}

#[test]
fn counting_allocator_is_installed() {
    assert!(wsmachine_fuzz::alloc::is_counting());
}

/// Inputs that crash on a core bug not fixed yet live in `crashes/<target>/`;
/// once fixed, move them to `regressions/`. `cargo test -p wsmachine-fuzz --
/// --ignored` replays them and lists those that still fail.
#[test]
#[ignore = "known core bugs, see fuzz/README.md"]
fn known_crashes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes");
    let mut failing = Vec::new();
    for (target, run) in TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for f in entries {
            let f = f.expect("dir entry").path();
            let data = std::fs::read(&f).expect("read input");
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failing.push(f.display().to_string());
            }
        }
    }
    assert!(failing.is_empty(), "still failing: {failing:#?}");
}
