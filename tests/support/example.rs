//! The example binaries `cargo test` builds, checked to be current: a test
//! of an example must never run an older build of it.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

/// The newest modification time under `dir` (files only).
fn newest(dir: &Path) -> SystemTime {
    let mut latest = SystemTime::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return latest;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let modified = if path.is_dir() {
            newest(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        latest = latest.max(modified);
    }
    latest
}

/// The path of example `name`, built by `cargo test` next to the test
/// binaries; fails if it is missing or older than the crate's sources or
/// the example's own.
pub(crate) fn example_binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<test>-* -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} missing: run `cargo test --all-features` (it builds the examples)",
                path.display()
            )
        });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = newest(&root.join("src")).max(newest(&root.join("examples").join(name)));
    assert!(
        built >= sources,
        "{} is older than the sources: run `cargo test --all-features` (it builds the examples)",
        path.display()
    );
    path
}
