//! The commands, each one the pipeline of SPEC §1 in order: lock → recover → sync → plan →
//! apply → index/report. Every command that writes repairs first; `check` only reports what a
//! repair would do.
//!
//! [`session`] opens a run (lock, permission check, repair); [`settings`] is the one reader of
//! the environment and of the installed index's settings; [`repo`] syncs the clone under the
//! trust policy and plans; [`index`] reads and rewrites the global index. Then one file per
//! command. A new command goes in a new file here, wired in `lib::dispatch`.

mod check;
mod compose;
mod enable;
mod index;
mod repo;
mod rollback;
mod session;
pub mod settings;
mod status;
mod sync;

pub use check::check;
pub use compose::compose;
pub use enable::set_enabled;
pub use rollback::rollback;
pub(crate) use session::open;
pub use status::status;
pub use sync::sync;
