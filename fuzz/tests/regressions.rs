//! Replays the committed corpus `regressions/<target>/*` and the generated
//! seeds through the same target functions the fuzzers run, under the
//! counting allocator so the memory bounds are checked here too.

use std::path::Path;

use wsmachine_fuzz::{alloc::CountingAlloc, seeds, TARGETS};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn replay_dir(dir: &Path, target: &str, run: fn(&[u8])) -> usize {
    let dir = dir.join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("regression inputs of {target}: {}: {e}", dir.display()));
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
    // Every target's corpus replays: a target whose folder is missing or
    // empty (or left out of the build, as `trace_parse` once was by a
    // feature nothing enabled) fails here instead of replaying nothing.
    let on_disk: Vec<String> = std::fs::read_dir(&root)
        .expect("regressions/")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for dir in &on_disk {
        assert!(
            TARGETS.iter().any(|(t, _)| t == dir),
            "regressions/{dir} belongs to no target in this build (a feature left out?)"
        );
    }
    for (target, run) in TARGETS {
        let n = replay_dir(&root, target, *run);
        assert!(n > 0, "no regression inputs for {target}");
    }
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

/// Inputs of core bugs not fixed yet live in `crashes/<target>/` (see
/// `crashes/README.md`). Each must still fail: one that passes was fixed and
/// belongs in `regressions/`, where it guards the fix. The folder itself must
/// exist, so a wrong path cannot make this pass by finding nothing.
#[test]
fn known_crashes_still_crash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes");
    assert!(
        root.join("README.md").is_file(),
        "{} must exist (with its README)",
        root.display()
    );
    let mut fixed = Vec::new();
    for (target, run) in TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for f in entries {
            let f = f.expect("dir entry").path();
            let data = std::fs::read(&f).expect("read input");
            if std::panic::catch_unwind(|| run(&data)).is_ok() {
                fixed.push(f.display().to_string());
            }
        }
    }
    assert!(
        fixed.is_empty(),
        "no longer crash, move them to regressions/: {fixed:#?}"
    );
}
