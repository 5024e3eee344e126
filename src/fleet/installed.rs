//! What the fleet knows is installed, and who runs a scheduled job: the
//! instances every replica learnt of (a hash in Redis: a keyed digest of
//! each instance id, its id sealed), and a lease per job, instance and
//! period, so each runs on one replica of the fleet.

use std::time::Duration;

use super::enabled::Fleet;

impl Fleet {
    fn installed_key(&self) -> String {
        format!("{}:installed", self.prefix)
    }

    fn instance_field(&self, instance: &str) -> String {
        self.hasher
            .digest(format!("installed\0{instance}").as_bytes())
            .hex()
    }

    /// Remember `instance` as installed, fleet-wide.
    pub(crate) async fn remember_installed(&self, instance: &str) -> bool {
        let key = self.installed_key();
        let Some(sealed) = self.sealer.seal(instance.as_bytes(), key.as_bytes()) else {
            return false;
        };
        self.store
            .hash_put(&key, &self.instance_field(instance), &sealed)
            .await
    }

    /// `instance` was removed, fleet-wide.
    #[cfg(feature = "webhooks")]
    pub(crate) async fn forget_installed(&self, instance: &str) -> bool {
        self.store
            .hash_remove(&self.installed_key(), &self.instance_field(instance))
            .await
    }

    /// Every instance the fleet knows is installed (`None`: Redis away).
    /// A value that does not open with the app secret is left out.
    pub(crate) async fn installed(&self) -> Option<Vec<String>> {
        let key = self.installed_key();
        let sealed = self.store.hash_values(&key).await?;
        Some(
            sealed
                .iter()
                .filter_map(|value| self.sealer.open(value, key.as_bytes()))
                .filter_map(|plain| String::from_utf8(plain.to_vec()).ok())
                .collect(),
        )
    }

    /// Take the run of `job` for `instance` in period `period` (until
    /// `lasts` from now): `Some(true)` if this replica runs it, `None` if
    /// Redis is unavailable.
    pub(crate) async fn job_lease(
        &self,
        job: &str,
        instance: &str,
        period: u64,
        lasts: Duration,
    ) -> Option<bool> {
        let digest = self
            .hasher
            .digest(format!("job\0{job}\0{instance}\0{period}").as_bytes());
        let key = format!("{}:job:{}", self.prefix, digest.hex());
        self.store.mark(&key, "running", lasts, true).await
    }
}
