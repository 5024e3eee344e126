//! [`CacheProbe`]: what an [`Elevator`]'s local caches hold, for tests of
//! invalidation; a test tool, so it is not part of the production type.

use crate::Elevator;

/// Looks into an [`Elevator`]'s local caches (this replica's, not Redis's):
/// for tests that forgetting, webhooks and fleet invalidations drop what
/// they must.
///
/// ```
/// use wix_elevate::{Elevator, test_util::CacheProbe};
///
/// let elevator = Elevator::builder("app", "secret").build().unwrap();
/// assert!(!elevator.has_cached_app_token("instance-1"));
/// assert!(!elevator.has_cached_identity("Bearer some-token"));
/// ```
pub trait CacheProbe {
    /// Whether an app token for `instance` is cached here.
    fn has_cached_app_token(&self, instance: &str) -> bool;

    /// Whether an identity for `token` (raw or `Bearer`, as the layer
    /// reads it) is cached here.
    fn has_cached_identity(&self, token: &str) -> bool;
}

impl CacheProbe for Elevator {
    fn has_cached_app_token(&self, instance: &str) -> bool {
        self.caches_app_token(instance)
    }

    fn has_cached_identity(&self, token: &str) -> bool {
        self.caches_identity(token)
    }
}
