//! The one integration-test binary (`cargo test --test it`): one module per area, all sharing the
//! fixture builder in `common` (real git repositories in temp dirs, a real `git daemon` on
//! 127.0.0.1, the real `updater` binary). Run one area with `cargo test --test it sync::`, one
//! test with `cargo test --test it sync::name_of_the_test`.
//!
//! The modules run in one process, in parallel threads: a test must not change process-wide
//! state (environment variables, the working directory, the umask, signal dispositions, a panic
//! hook); it sets such things on the `Command` it spawns instead.

mod common;

mod check;
mod core;
mod crash;
mod framework;
mod homeserver;
mod integrations;
mod legacy;
mod manage;
mod output;
mod parsers;
mod python_entry;
mod run_modes;
mod signals;
mod sync;
mod trust;
mod wrapper;
