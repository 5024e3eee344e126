//! Webhook deliveries' marks in Redis: a replica marks a delivery it is
//! taking, then taken, so the fleet takes each once (see the webhook
//! endpoint's deliveries).

use std::time::Duration;

use super::enabled::Fleet;

impl Fleet {
    /// Mark a webhook delivery (by its keyed digest) `state` for `ttl`,
    /// only if it has no mark yet with `only_if_absent`: `Some(true)` if
    /// marked, `None` if Redis is unavailable.
    pub(crate) async fn mark_delivery(
        &self,
        digest_hex: &str,
        state: &str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> Option<bool> {
        let key = format!("{}:webhook:{digest_hex}", self.prefix);
        self.store.mark(&key, state, ttl, only_if_absent).await
    }

    /// A delivery's mark: `Some(None)` if it has none, `None` if Redis is
    /// unavailable.
    pub(crate) async fn delivery_mark(&self, digest_hex: &str) -> Option<Option<String>> {
        let key = format!("{}:webhook:{digest_hex}", self.prefix);
        self.store.read(&key).await
    }

    /// Unmark a delivery that could not be taken (Wix will retry it).
    pub(crate) async fn forget_delivery(&self, digest_hex: &str) {
        let key = format!("{}:webhook:{digest_hex}", self.prefix);
        self.store.delete(&key).await;
    }
}
