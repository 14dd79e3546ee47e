//! The process-wide fork-servers ([`SERVERS`]), one per [`ServerKey`], each started lazily by
//! the first run that wants it and retired when it dies or keeps failing.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};

use super::key::ServerKey;
use super::server::{lock, ForkServer};

/// Most fork-servers started for one key (a dead one is replaced on the next run).
const MAX_SERVER_STARTS: u32 = 3;

/// Runs in a row that could not use a live fork-server before it is replaced.
const MAX_TROUBLES: u32 = 3;

/// Most keys with a fork-server; runs beyond use fresh interpreters.
const MAX_SERVERS: usize = if cfg!(test) { 256 } else { 8 };

/// The process-wide fork-servers.
pub(in crate::runner) static SERVERS: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Fork-servers by key, each started lazily by the first run that wants it.
pub(in crate::runner) struct Registry {
    pub(in crate::runner) slots: Mutex<HashMap<ServerKey, Arc<Mutex<Slot>>>>,
}

#[derive(Default)]
pub(in crate::runner) struct Slot {
    pub(in crate::runner) server: Option<Arc<ForkServer>>,
    starts: u32,
    /// A start failed: this key uses fresh interpreters from now on.
    broken: bool,
}

impl Registry {
    pub(in crate::runner) fn new() -> Self {
        Registry {
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The live server for `key`, started if needed; `None` when there is none to be had.
    pub(in crate::runner) fn server(&self, key: &ServerKey) -> Option<Arc<ForkServer>> {
        let slot = {
            let mut slots = lock(&self.slots);
            if !slots.contains_key(key) && slots.len() >= MAX_SERVERS {
                return None;
            }
            Arc::clone(slots.entry(key.clone()).or_default())
        };
        // Held while the server starts: the other runs for this key wait for it, not start their own.
        let mut slot = lock(&slot);
        if let Some(server) = &slot.server {
            return Some(Arc::clone(server));
        }
        if slot.broken || slot.starts >= MAX_SERVER_STARTS {
            return None;
        }
        slot.starts += 1;
        match ForkServer::start(key) {
            Ok(server) => {
                log::debug!(
                    "python fork-server {} started for {} in {}",
                    server.pid,
                    key.python.display(),
                    key.cwd.display()
                );
                let server = Arc::new(server);
                slot.server = Some(Arc::clone(&server));
                Some(server)
            }
            Err(err) => {
                log::debug!(
                    "cannot start a python fork-server with {}: {err:#}; main(args) modules \
                     run in fresh interpreters",
                    key.python.display()
                );
                slot.broken = true;
                None
            }
        }
    }

    /// A run could not use `server`: when it is dead, or failed [`MAX_TROUBLES`] runs in a row,
    /// forget it, so that the next run starts another. Runs still using it keep it until they end.
    pub(in crate::runner) fn trouble(&self, key: &ServerKey, server: &Arc<ForkServer>) {
        let troubles = server.troubles.fetch_add(1, Ordering::Relaxed) + 1;
        if !server.exited() && troubles < MAX_TROUBLES {
            return;
        }
        let Some(slot) = lock(&self.slots).get(key).map(Arc::clone) else {
            return;
        };
        let mut slot = lock(&slot);
        if slot
            .server
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, server))
        {
            log::debug!("python fork-server {} retired", server.pid);
            slot.server = None;
        }
    }

    #[cfg(test)]
    pub(in crate::runner) fn server_pids(&self) -> Vec<u32> {
        let slots: Vec<_> = lock(&self.slots).values().map(Arc::clone).collect();
        slots
            .iter()
            .filter_map(|slot| lock(slot).server.as_ref().map(|server| server.pid))
            .collect()
    }
}
