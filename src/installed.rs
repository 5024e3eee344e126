//! [`Installed`]: the instances this app is known to be installed on, in
//! this process (and, in fleet mode, in Redis for every replica): learnt
//! from verified `AppInstalled` webhooks and from callers whose token
//! named an instance, dropped on a verified `AppRemoved`.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Mutex,
};

/// The instances this process learnt of.
#[derive(Default)]
pub(crate) struct Installed {
    known: Mutex<HashSet<Box<str>>>,
}

impl Installed {
    /// Remember `instance`: whether it is new here.
    pub(crate) fn note(&self, instance: &str) -> bool {
        let mut known = self.lock();
        if known.contains(instance) {
            return false;
        }
        known.insert(instance.into())
    }

    /// `instance` was removed.
    #[cfg(feature = "webhooks")]
    pub(crate) fn remove(&self, instance: &str) {
        self.lock().remove(instance);
    }

    /// Every instance known here, and those of `others` (the fleet's),
    /// once each, in order.
    pub(crate) fn with(&self, others: Option<Vec<String>>) -> Vec<String> {
        let mut all: BTreeSet<String> = others.unwrap_or_default().into_iter().collect();
        all.extend(self.lock().iter().map(|instance| instance.to_string()));
        all.into_iter().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Box<str>>> {
        match self.known.lock() {
            Ok(known) => known,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
