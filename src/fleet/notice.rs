//! What replicas say to each other about a forget: the notice's id, the
//! Redis key each listening replica confirms it under, how long that count
//! and a subscription attempt last, and what a replica runs for a notice.
//! Shared by the replica's handle ([`enabled`](super::enabled)) and its
//! listener ([`listener`](super::listener)), so neither imports the other.

use std::time::Duration;

use super::Invalidation;

/// How long the listener may take to connect and subscribe.
pub(super) const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a listening replica sends itself a heartbeat through the
/// channel.
pub(super) const HEARTBEAT: Duration = Duration::from_millis(80);

/// How long after sending a heartbeat it heard back a replica trusts its
/// local caches: the most a forget waits, and the longest a replica that
/// stopped hearing the fleet (frozen, partitioned) serves from them.
pub(crate) const FRESH: Duration = Duration::from_millis(250);

/// How long a confirmation count stays in Redis.
pub(super) const CONFIRM_LIFETIME: Duration = Duration::from_secs(60);

/// What a replica runs for each invalidation it hears.
pub(super) type Handler = Box<dyn Fn(Invalidation) + Send + Sync>;

/// 128 random bits, in hex: a notice's id.
pub(super) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Redis key under which replicas confirm the notice `id` (hex, as
/// made by [`random_id`]; anything else confirms nothing).
pub(super) fn confirm_key(prefix: &str, id: &str) -> Option<String> {
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{prefix}:confirm:{id}"))
}
