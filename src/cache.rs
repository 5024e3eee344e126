//! [`FlightCache`], the generic cache behind both of an elevator's caches
//! (identities and app tokens): a bounded [`quick_cache`] (S3-FIFO
//! eviction, a lock-free-for-readers fast `get`) whose entries carry their
//! own deadline, plus single flight on misses: however many requests miss
//! the same key at once, one of them calls Wix and the rest wait for its
//! answer.
//!
//! A failed call is never served from the cache. It is handed to the
//! requests that were already waiting for it (so an outage does not turn
//! N waiters into N sequential calls), and every request that starts after
//! it calls Wix again.

use std::{future::Future, hash::Hash, sync::Arc};
use tokio::time::Instant;

use quick_cache::sync::{Cache, EntryAction, EntryResult};

use crate::{error::UpstreamError, metrics::CacheMetrics};

/// A cached value that knows until when it may be served.
pub(crate) trait Fresh: Clone {
    fn is_fresh(&self, now: Instant) -> bool;
}

#[derive(Clone)]
enum Slot<V> {
    Ready(V),
    /// The call failed at `at`: only requests started by then may see it.
    /// The value it was replacing, if any, is kept for degraded mode.
    Failed {
        at: Instant,
        error: Arc<UpstreamError>,
        stale: Option<V>,
    },
}

/// When a request began (a failure recorded before it is never its answer)
/// and by when its authentication must be done.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
}

/// A bounded cache with single-flight fills.
pub(crate) struct FlightCache<K, V> {
    entries: Cache<K, Slot<V>>,
    metrics: CacheMetrics,
}

impl<K, V> FlightCache<K, V>
where
    K: Eq + Hash + Clone,
    V: Fresh,
{
    pub(crate) fn new(capacity: usize, metrics: CacheMetrics) -> Self {
        Self {
            entries: Cache::new(capacity),
            metrics,
        }
    }

    /// The hot path: a fresh value, without waiting or allocating.
    pub(crate) fn get(&self, key: &K, now: Instant) -> Option<V> {
        match self.entries.get(key)? {
            Slot::Ready(value) if value.is_fresh(now) => {
                self.metrics.hit.increment(1);
                Some(value)
            }
            _ => None,
        }
    }

    /// An acceptable value, or `fetch`'s: one fetch per key at a time, its
    /// answer shared by every request waiting on it. `started` is when the
    /// asking request began: a failure recorded before it is never
    /// returned. `accept` says whether a cached value will do (at least
    /// [`Fresh::is_fresh`]); `fetch` is handed the value it replaces, if
    /// any (known but stale, or kept through a failure).
    ///
    /// If the fetch fails and the value it was replacing passes `stale_ok`
    /// for that failure (degraded mode), that value is kept and returned.
    pub(crate) async fn get_or_fetch<Fut>(
        &self,
        key: &K,
        started: Instant,
        accept: impl Fn(&V, Instant) -> bool,
        fetch: impl FnOnce(Option<V>) -> Fut,
        stale_ok: impl Fn(&V, &UpstreamError, Instant) -> bool,
    ) -> Result<V, Arc<UpstreamError>>
    where
        Fut: Future<Output = Result<V, UpstreamError>>,
    {
        let entry = self
            .entries
            .entry_async(key, |_, slot| match slot {
                Slot::Ready(value) if accept(value, Instant::now()) => {
                    EntryAction::Retain(Ok(value.clone()))
                }
                Slot::Failed { at, error, .. } if started <= *at => {
                    EntryAction::Retain(Err(error.clone()))
                }
                _ => EntryAction::ReplaceWithGuard,
            })
            .await;
        let (guard, previous) = match entry {
            EntryResult::Retained(shared) => {
                self.metrics.coalesced.increment(1);
                tracing::debug!(target: "wix_elevate", "coalesced: answered by a Wix call another request made");
                return shared;
            }
            EntryResult::Vacant(guard) => (Some(guard), None),
            EntryResult::Replaced(guard, previous) => (Some(guard), Some(previous)),
            // Neither happens with the callback above; fetch without a slot.
            EntryResult::Removed(..) | EntryResult::Timeout => (None, None),
        };
        self.metrics.miss.increment(1);
        // The value being replaced, kept through failed refreshes.
        let previous = match previous {
            Some(Slot::Ready(value)) => Some(value),
            Some(Slot::Failed { stale, .. }) => stale,
            None => None,
        };
        // If this future is dropped mid-fetch, the guard's drop hands the
        // fill to the next waiter.
        let (slot, result) = match fetch(previous.clone()).await {
            Ok(value) => (Slot::Ready(value.clone()), Ok(value)),
            Err(error) => match previous {
                Some(stale) if stale_ok(&stale, &error, Instant::now()) => {
                    tracing::warn!(target: "wix_elevate", %error, "Wix failed; serving a stale entry (degraded mode)");
                    (Slot::Ready(stale.clone()), Ok(stale))
                }
                stale => {
                    let error = Arc::new(error);
                    let at = Instant::now();
                    (
                        Slot::Failed {
                            at,
                            error: error.clone(),
                            stale,
                        },
                        Err(error),
                    )
                }
            },
        };
        if let Some(guard) = guard {
            // Fails only if the entry was replaced meanwhile; nothing to do.
            let _ = guard.insert(slot);
        }
        result
    }

    /// Store `value` (after a background renewal).
    pub(crate) fn insert(&self, key: K, value: V) {
        self.entries.insert(key, Slot::Ready(value));
    }

    /// Drop the entry for `key`.
    pub(crate) fn remove(&self, key: &K) {
        self.entries.remove(key);
    }

    /// Drop the entry for `key` if it holds a value `stale` picks out.
    pub(crate) fn remove_if(&self, key: &K, stale: impl FnOnce(&V) -> bool) {
        self.entries.remove_if(
            key,
            |slot| matches!(slot, Slot::Ready(value) if stale(value)),
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Until(Instant, u32);

    impl Fresh for Until {
        fn is_fresh(&self, now: Instant) -> bool {
            now < self.0
        }
    }

    fn fresh(value: &Until, now: Instant) -> bool {
        value.is_fresh(now)
    }

    fn never(_: &Until, _: &UpstreamError, _: Instant) -> bool {
        false
    }

    fn failure() -> UpstreamError {
        UpstreamError::timeout(crate::Endpoint::TokenInfo)
    }

    #[tokio::test]
    async fn a_fresh_value_is_served_and_a_stale_one_refetched() {
        let cache = FlightCache::<u8, Until>::new(8, CacheMetrics::new("test"));
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let v = cache
            .get_or_fetch(&1, now, fresh, |_| async { Ok(Until(later, 1)) }, never)
            .await
            .unwrap();
        assert_eq!(v.1, 1);
        assert_eq!(cache.get(&1, now), Some(Until(later, 1)));
        assert_eq!(cache.get(&1, later), None, "stale at its deadline");
        let v = cache
            .get_or_fetch(&1, now, fresh, |_| async { Ok(Until(later, 2)) }, never)
            .await
            .unwrap();
        assert_eq!(v.1, 1, "still fresh: no refetch");
    }

    #[tokio::test]
    async fn a_failure_is_never_served_to_a_later_request() {
        let cache = FlightCache::<u8, Until>::new(8, CacheMetrics::new("test"));
        let started = Instant::now();
        assert!(
            cache
                .get_or_fetch(&1, started, fresh, |_| async { Err(failure()) }, never)
                .await
                .is_err()
        );
        assert_eq!(cache.get(&1, Instant::now()), None);
        let later = Instant::now() + Duration::from_secs(60);
        let v = cache
            .get_or_fetch(
                &1,
                Instant::now(),
                fresh,
                |_| async { Ok(Until(later, 7)) },
                never,
            )
            .await;
        assert_eq!(v.unwrap().1, 7, "a request after the failure fetched again");
    }

    #[tokio::test]
    async fn waiters_share_one_fetch_and_its_failure() {
        let cache = Arc::new(FlightCache::<u8, Until>::new(8, CacheMetrics::new("test")));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (cache, calls, mut released) = (cache.clone(), calls.clone(), released.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_fetch(
                            &1,
                            started,
                            fresh,
                            |_| async move {
                                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                let _ = released.wait_for(|r| *r).await;
                                Err::<Until, _>(failure())
                            },
                            never,
                        )
                        .await
                })
            })
            .collect();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        for task in tasks {
            assert!(task.await.unwrap().is_err());
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = FlightCache::<u32, Until>::new(100, CacheMetrics::new("test"));
        let later = Instant::now() + Duration::from_secs(60);
        for i in 0..10_000 {
            cache.insert(i, Until(later, i));
        }
        assert!(cache.len() <= 100, "{}", cache.len());
    }
}
