//! The one integration-test binary (`cargo test --test it`): one module per area, all sharing the
//! fixture builder in `common` (real git repositories in temp dirs, a real `git daemon` on
//! 127.0.0.1, the real `updater` binary). Run one area with `cargo test --test it sync::`, one
//! test with `cargo test --test it sync::name_of_the_test`.
//!
//! The modules run in one process, in parallel threads: a test must not change process-wide
//! state (environment variables, the working directory, the umask, signal dispositions, a panic
//! hook); it sets such things on the `Command` it spawns instead.

mod common;

mod bundle;
mod cache;
mod check;
mod compose;
mod compose_rules;
mod core;
mod crash;
mod fleet;
mod framework;
mod homeserver;
mod integrations;
mod journald;
mod legacy;
mod lifecycle;
mod manage;
mod output;
mod packaging;
mod parsers;
mod python_entry;
mod run_modes;
mod signals;
mod sync;
mod trust;
mod waves;
mod window;
mod wrapper;

/// The modules share one process: none of them may change process-wide state, which would leak
/// into tests running at the same time in other threads. Each such call is set on the spawned
/// `Command` instead (`.env`, `.env_remove`, `.current_dir`, `umask` in a `sh -c` wrapper).
#[test]
fn no_test_module_changes_process_wide_state() {
    // Spelled in pieces so this file does not match itself.
    let forbidden = [
        concat!("set_", "var("),
        concat!("remove_", "var("),
        concat!("set_current_", "dir("),
        concat!("set_", "hook("),
        concat!("take_", "hook("),
        concat!("libc::", "umask"),
        concat!("process::", "umask"),
        concat!("sig", "action("),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut files = vec![
        dir.join("common/mod.rs"),
        dir.join("common/homeserver.rs"),
        dir.join("common/docker.rs"),
    ];
    for entry in std::fs::read_dir(&dir).expect("read tests/it") {
        let path = entry.expect("entry of tests/it").path();
        if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    assert!(files.len() > 10, "the test modules are found: {files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for f in forbidden.iter().filter(|f| code.contains(**f)) {
                found.push(format!("{}:{}: {f}", file.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "process-wide state changed in a shared test process:\n{}",
        found.join("\n")
    );
}
