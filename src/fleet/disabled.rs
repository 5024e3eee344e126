//! Without feature `redis`: an elevator never has a fleet, and the code
//! that consults one is never reached.

use std::{future::Future, time::Duration};

use super::{Budget, Invalidation, Place, ToStore};

/// Without feature `redis` there is no fleet: this type has no value.
#[derive(Debug)]
pub(crate) enum Fleet {}

impl Fleet {
    pub(crate) fn identity_key(&self, _: &str) -> String {
        match *self {}
    }

    pub(crate) fn app_key(&self, _: &str) -> String {
        match *self {}
    }

    pub(crate) fn degraded(&self) -> Option<&'static str> {
        match *self {}
    }

    pub(crate) fn trusts_local(&self, _: tokio::time::Instant) -> bool {
        match *self {}
    }

    pub(crate) fn is_required(&self) -> bool {
        false
    }

    pub(crate) fn is_available(&self) -> bool {
        match *self {}
    }

    pub(crate) fn on_invalidation(&self, _: impl Fn(Invalidation) + Send + Sync + 'static) {
        match *self {}
    }

    pub(crate) async fn shared<T, E, Fut>(
        &self,
        _: Place<'_>,
        _: impl Fn(&[u8]) -> Option<T>,
        _: impl FnOnce(Budget) -> Fut,
        _: impl FnOnce(Duration) -> E,
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<(T, Option<ToStore>), E>>,
    {
        match *self {}
    }

    pub(crate) async fn forget(&self, _: Invalidation) -> bool {
        match *self {}
    }

    #[cfg(feature = "webhooks")]
    pub(crate) async fn mark_delivery(
        &self,
        _: &str,
        _: &str,
        _: Duration,
        _: bool,
    ) -> Option<bool> {
        match *self {}
    }

    #[cfg(feature = "webhooks")]
    pub(crate) async fn delivery_mark(&self, _: &str) -> Option<Option<String>> {
        match *self {}
    }

    #[cfg(feature = "webhooks")]
    pub(crate) async fn forget_delivery(&self, _: &str) {
        match *self {}
    }

    pub(crate) async fn rate(&self, _: &[&str], _: u32) -> Option<Result<(), Duration>> {
        match *self {}
    }

    pub(crate) async fn remember_installed(&self, _: &str) -> bool {
        match *self {}
    }

    #[cfg(feature = "webhooks")]
    pub(crate) async fn forget_installed(&self, _: &str) -> bool {
        match *self {}
    }

    pub(crate) async fn installed(&self) -> Option<Vec<String>> {
        match *self {}
    }

    pub(crate) async fn job_lease(&self, _: &str, _: &str, _: u64, _: Duration) -> Option<bool> {
        match *self {}
    }
}
