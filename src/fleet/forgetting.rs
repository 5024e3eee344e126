//! Forgetting fleet-wide: the instance's generation (or the token's mark)
//! moved past every value stored before, those values deleted, and every
//! replica told through pub/sub, each confirming it dropped its copies.

use std::time::Duration;

use super::{
    Invalidation, Notice,
    enabled::{Fleet, MARK_LIFETIME, mark_key},
    notice::{FRESH, confirm_key, random_id},
};

impl Fleet {
    /// Forget an instance (its callers' identities and its app token)
    /// or a token, in Redis, then on every replica through pub/sub:
    /// true once every replica listening confirmed it dropped its local
    /// copies, or [`FRESH`] after the notice went out, whichever comes
    /// first (a replica that has not acted on it by then no longer trusts
    /// its local caches: see [`trusts_local`](Self::trusts_local)); false
    /// if Redis could not be reached.
    pub(crate) async fn forget(&self, invalidation: Invalidation) -> bool {
        self.ensure_listening();
        let (reached, confirm) = match &invalidation {
            Invalidation::Instance {
                instance,
                stale: None,
            } => {
                let app = self.app_key(instance);
                let generation = self.generation_key(instance);
                let reached = self
                    .store
                    .forget(&self.sequence_key, &generation, MARK_LIFETIME, &[&app])
                    .await
                    .is_some();
                (reached, Some(random_id()))
            }
            Invalidation::Token { digest } => {
                let key = self.identity_key(digest);
                let reached = self
                    .store
                    .forget(&self.sequence_key, &mark_key(&key), MARK_LIFETIME, &[&key])
                    .await
                    .is_some();
                (reached, Some(random_id()))
            }
            // A stale app token: only that one is dropped, everywhere,
            // and nobody waits for it.
            Invalidation::Instance { stale: Some(_), .. }
            | Invalidation::Everything
            | Invalidation::Heartbeat { .. } => (true, None),
        };
        let confirm_key = confirm
            .as_deref()
            .and_then(|id| confirm_key(&self.prefix, id));
        let notice = Notice {
            invalidation,
            confirm,
        };
        let sealed = serde_json::to_vec(&notice)
            .ok()
            .and_then(|json| self.sealer.seal(&json, self.channel.as_bytes()));
        let Some(listening) = (match sealed {
            Some(sealed) => self.store.publish(&self.channel, &sealed).await,
            None => None,
        }) else {
            return false;
        };
        if let Some(key) = confirm_key
            && reached
        {
            self.confirmed(&key, listening).await;
        }
        reached
    }

    /// Wait until `expected` replicas confirmed under `key`, for at most
    /// [`FRESH`]: past it, a replica that has not acted on the notice has
    /// not heard any heartbeat it sent after it, so it trusts nothing it
    /// holds. A silent subscriber (frozen, or a stray one) delays a forget
    /// by [`FRESH`] at most.
    async fn confirmed(&self, key: &str, expected: u64) -> bool {
        let deadline = tokio::time::Instant::now() + FRESH;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.store.confirmations(key).await {
                Some(count) if count >= expected => return true,
                Some(_) if tokio::time::Instant::now() < deadline => {}
                _ => {
                    tokio::time::sleep_until(deadline).await;
                    return false;
                }
            }
            tokio::time::sleep(
                pause.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            )
            .await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}
