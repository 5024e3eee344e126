//! Guarding calls to Wix: a circuit breaker, a cap on calls in flight, and
//! retries with jittered backoff, all within the request's deadline.
//!
//! * **Retries.** Transient failures (connection errors, dropped
//!   connections, an attempt's timeout, 408, 425, 502/503/504) are retried
//!   with full jitter backoff (50 ms doubling to 1 s, at most
//!   [`MAX_ATTEMPTS`], or fewer where the caller says: a non-idempotent Wix
//!   API call gets one), as long as the wait fits before the deadline. A
//!   429 is retried only when its `Retry-After` fits; other 4xx never.
//! * **Circuit breaker.** After `threshold` consecutive attempts that
//!   failed because of Wix (timeouts, transport errors, 5xx, 429), calls
//!   are refused at once for the cool-down (503 with `Retry-After`), then
//!   exactly one probe goes through: success closes the circuit, failure
//!   opens it again. A refusal or a malformed answer about one token or one
//!   instance never counts. Each endpoint family (Token Info, Create Access
//!   Token, Wix APIs) has its own guard.
//! * **Bounded concurrency.** At most `max_in_flight` attempts in flight;
//!   one beyond it waits at most `WixGuards::max_queue_wait` (and never past its
//!   deadline), then gets 503. A back-off sleep holds no slot.

use std::{
    future::Future,
    hash::{BuildHasher, RandomState},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::{
    error::{UpstreamError, UpstreamErrorKind},
    trace::{self, Outbound},
};

/// Attempts per call, the first included.
pub(crate) const MAX_ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How the guard behaves; see the module docs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GuardSettings {
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) max_queue_wait: Duration,
}

pub(crate) struct UpstreamGuard {
    breaker: Breaker,
    permits: Semaphore,
    max_queue_wait: Duration,
    jitter: Jitter,
}

impl UpstreamGuard {
    pub(crate) fn new(name: &'static str, settings: GuardSettings) -> Self {
        Self {
            breaker: Breaker::new(name, settings.breaker_threshold, settings.breaker_cooldown),
            permits: Semaphore::new(settings.max_in_flight),
            max_queue_wait: settings.max_queue_wait,
            jitter: Jitter::default(),
        }
    }

    /// Run `attempt` under the breaker, the concurrency cap and the retry
    /// policy, at most `max_attempts` times, giving up at `deadline`.
    ///
    /// Each attempt holds a concurrency slot only while it runs: back-off
    /// sleeps hold none. Only failures that say Wix itself is in trouble
    /// ([`UpstreamError::trips_breaker`]) count toward the breaker; any
    /// other answer, a refusal or a malformed body included, shows Wix is
    /// up.
    ///
    /// Each attempt runs in its own span (see [`crate::trace`]); a refusal
    /// by the open circuit is an event in the current one.
    pub(crate) async fn call<'a, T, Fut>(
        &self,
        outbound: impl Into<Outbound<'a>>,
        deadline: Instant,
        max_attempts: u32,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, UpstreamError>
    where
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        let outbound = outbound.into();
        let endpoint = outbound.endpoint;
        let admission = self.breaker.admit(Instant::now()).map_err(|retry_after| {
            tracing::debug!(
                target: "wix_elevate",
                endpoint = endpoint.as_str(),
                retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
                "circuit open: Wix not called"
            );
            UpstreamError::circuit_open(endpoint, retry_after)
        })?;
        let probe = ProbeGuard {
            breaker: &self.breaker,
            probing: admission == Admission::Probe,
        };
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0;
        loop {
            let span = outbound.span(attempts);
            attempts += 1;
            let result = {
                let now = Instant::now();
                let queue_deadline =
                    deadline.min(now.checked_add(self.max_queue_wait).unwrap_or(deadline));
                let _permit =
                    match tokio::time::timeout_at(queue_deadline, self.permits.acquire()).await {
                        Ok(Ok(permit)) => permit,
                        _ => {
                            let error = UpstreamError::overloaded(endpoint);
                            trace::failed(&span, &error);
                            return Err(error);
                        }
                    };
                let attempt = attempt().instrument(span.clone());
                match tokio::time::timeout_at(deadline, attempt).await {
                    Ok(result) => result,
                    Err(_) => Err(UpstreamError::timeout(endpoint)),
                }
            };
            let error = match result {
                Ok(value) => {
                    probe.settle(true);
                    return Ok(value);
                }
                Err(error) => error,
            };
            trace::failed(&span, &error);
            probe.settle(!error.trips_breaker());
            let wait = match error.kind() {
                UpstreamErrorKind::Throttled => match error.retry_after() {
                    Some(after) => after,
                    None => return Err(error),
                },
                _ if error.is_transient() => self.jitter.up_to(backoff),
                _ => return Err(error),
            };
            let out_of_time = Instant::now()
                .checked_add(wait)
                .is_none_or(|ready| ready >= deadline);
            if probe.probing
                || attempts >= max_attempts
                || out_of_time
                || self.breaker.is_open(Instant::now())
            {
                return Err(error);
            }
            tracing::debug!(target: "wix_elevate", %error, attempt = attempts, wait_ms = wait.as_millis() as u64, "retrying Wix call");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Whether the breaker is letting calls through now (closed, or ready
    /// for a probe).
    pub(crate) fn is_closed(&self) -> bool {
        !self.breaker.is_open(Instant::now())
    }
}

/// Full jitter: a uniform pick in `[0, max]`, from a per-process random key.
#[derive(Default)]
struct Jitter {
    key: RandomState,
    counter: AtomicU64,
}

impl Jitter {
    fn up_to(&self, max: Duration) -> Duration {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let random = self.key.hash_one(n);
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(random % nanos.max(1))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Normal,
    Probe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Consecutive-failure circuit breaker with a single half-open probe. It
/// logs one WARN when it opens and one when it closes again, never one
/// per request.
pub(crate) struct Breaker {
    /// What it guards, for its log lines ("Wix token_info", "Redis").
    name: &'static str,
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub(crate) fn new(name: &'static str, threshold: u32, cooldown: Duration) -> Self {
        Self {
            name,
            threshold,
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// May a call go out now? `Err` holds how long until one may.
    pub(crate) fn admit(&self, now: Instant) -> Result<Admission, Duration> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(Admission::Normal),
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Ok(Admission::Probe)
            }
            State::HalfOpen { probing: true } => Err(self.cooldown),
        }
    }

    pub(crate) fn record(&self, ok: bool, now: Instant) {
        let mut state = self.lock();
        *state = match (*state, ok) {
            (State::Closed { .. }, true) => State::Closed { failures: 0 },
            (_, true) => {
                tracing::warn!(target: "wix_elevate", name = self.name, "answering again: circuit closed");
                State::Closed { failures: 0 }
            }
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (_, false) => {
                if !matches!(*state, State::Open { .. } | State::HalfOpen { .. }) {
                    tracing::warn!(target: "wix_elevate", name = self.name, cooldown_ms = self.cooldown.as_millis() as u64, "failing: circuit open");
                }
                State::Open {
                    until: now + self.cooldown,
                }
            }
        };
    }

    pub(crate) fn is_open(&self, now: Instant) -> bool {
        matches!(*self.lock(), State::Open { until } if now < until)
    }

    /// A probe ended without an outcome (its request was dropped).
    pub(crate) fn abandon_probe(&self) {
        let mut state = self.lock();
        if *state == (State::HalfOpen { probing: true }) {
            *state = State::HalfOpen { probing: false };
        }
    }
}

/// Records attempt outcomes; frees the half-open slot if dropped unsettled.
struct ProbeGuard<'a> {
    breaker: &'a Breaker,
    probing: bool,
}

impl ProbeGuard<'_> {
    fn settle(&self, ok: bool) {
        self.breaker.record(ok, Instant::now());
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.probing {
            self.breaker.abandon_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::error::Endpoint;

    fn settings() -> GuardSettings {
        GuardSettings {
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_millis(200),
            max_in_flight: 2,
            max_queue_wait: Duration::from_millis(50),
        }
    }

    fn transient() -> UpstreamError {
        UpstreamError::bad_status(Endpoint::TokenInfo, http::StatusCode::BAD_GATEWAY, None)
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_probes_once() {
        let breaker = Breaker::new("test", 3, Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..2 {
            breaker.record(false, now);
            assert_eq!(breaker.admit(now), Ok(Admission::Normal));
        }
        breaker.record(false, now);
        assert!(breaker.admit(now).is_err(), "open after 3");
        let later = now + Duration::from_secs(11);
        assert_eq!(breaker.admit(later), Ok(Admission::Probe));
        assert!(breaker.admit(later).is_err(), "one probe at a time");
        breaker.record(false, later);
        assert!(breaker.admit(later).is_err(), "a failed probe reopens");
        let much_later = later + Duration::from_secs(11);
        assert_eq!(breaker.admit(much_later), Ok(Admission::Probe));
        breaker.record(true, much_later);
        assert_eq!(
            breaker.admit(much_later),
            Ok(Admission::Normal),
            "a good probe closes"
        );
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = Breaker::new("test", 3, Duration::from_secs(10));
        let now = Instant::now();
        breaker.record(false, now);
        breaker.record(false, now);
        breaker.record(true, now);
        breaker.record(false, now);
        breaker.record(false, now);
        assert_eq!(breaker.admit(now), Ok(Admission::Normal));
    }

    #[test]
    fn an_abandoned_probe_frees_the_half_open_slot() {
        let breaker = Breaker::new("test", 1, Duration::ZERO);
        let now = Instant::now();
        breaker.record(false, now);
        assert_eq!(breaker.admit(now), Ok(Admission::Probe));
        breaker.abandon_probe();
        assert_eq!(breaker.admit(now), Ok(Admission::Probe));
    }

    #[tokio::test]
    async fn transient_failures_are_retried_then_succeed() {
        let guard = UpstreamGuard::new("test", settings());
        let attempts = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        let result = guard
            .call(Endpoint::TokenInfo, deadline, MAX_ATTEMPTS, || {
                let n = attempts.fetch_add(1, Ordering::SeqCst);
                async move { if n < 2 { Err(transient()) } else { Ok(n) } }
            })
            .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn client_errors_and_malformed_answers_are_not_retried() {
        let guard = UpstreamGuard::new("test", settings());
        let attempts = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        let result: Result<(), _> = guard
            .call(Endpoint::TokenInfo, deadline, MAX_ATTEMPTS, || {
                attempts.fetch_add(1, Ordering::SeqCst);
                async {
                    Err(UpstreamError::bad_status(
                        Endpoint::TokenInfo,
                        http::StatusCode::BAD_REQUEST,
                        None,
                    ))
                }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_retry_after_longer_than_the_deadline_is_not_waited_for() {
        let guard = UpstreamGuard::new("test", settings());
        let attempts = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_millis(500);
        let result: Result<(), _> = guard
            .call(Endpoint::TokenInfo, deadline, MAX_ATTEMPTS, || {
                attempts.fetch_add(1, Ordering::SeqCst);
                async {
                    Err(UpstreamError::throttled(
                        Endpoint::TokenInfo,
                        Some(Duration::from_secs(30)),
                        None,
                    ))
                }
            })
            .await;
        assert!(matches!(result, Err(e) if e.kind() == UpstreamErrorKind::Throttled));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn callers_beyond_the_cap_wait_a_bounded_time_then_are_refused() {
        let guard = UpstreamGuard::new("test", settings());
        let (release, released) = tokio::sync::watch::channel(false);
        let deadline = Instant::now() + Duration::from_secs(5);
        let hold = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|r| *r).await;
            Ok::<_, UpstreamError>(())
        };
        let first = guard.call(Endpoint::TokenInfo, deadline, MAX_ATTEMPTS, || {
            hold(released.clone())
        });
        let second = guard.call(Endpoint::TokenInfo, deadline, MAX_ATTEMPTS, || {
            hold(released.clone())
        });
        let third = guard.call(Endpoint::TokenInfo, deadline, MAX_ATTEMPTS, || {
            hold(released.clone())
        });
        let (first, second, third) = tokio::join!(first, second, async {
            let refused = third.await;
            release.send(true).unwrap();
            refused
        });
        assert!(first.is_ok() && second.is_ok());
        assert!(matches!(third, Err(e) if e.kind() == UpstreamErrorKind::Overloaded));
    }

    #[tokio::test]
    async fn only_failures_of_wix_itself_count_toward_the_breaker() {
        let guard = UpstreamGuard::new("test", settings());
        let deadline = Instant::now() + Duration::from_secs(5);
        // Threshold 3: five refusals and five malformed answers in a row
        // leave the circuit closed.
        for _ in 0..5 {
            let refused: Result<(), _> = guard
                .call(Endpoint::TokenInfo, deadline, 1, || async {
                    Err(UpstreamError::bad_status(
                        Endpoint::TokenInfo,
                        http::StatusCode::NOT_FOUND,
                        None,
                    ))
                })
                .await;
            assert!(refused.is_err());
            let malformed: Result<(), _> = guard
                .call(Endpoint::TokenInfo, deadline, 1, || async {
                    Err(UpstreamError::malformed(Endpoint::TokenInfo, "test"))
                })
                .await;
            assert!(malformed.is_err());
        }
        assert!(guard.is_closed());
        for _ in 0..3 {
            let _ = guard
                .call(Endpoint::TokenInfo, deadline, 1, || async {
                    Err::<(), _>(transient())
                })
                .await;
        }
        assert!(!guard.is_closed(), "three 502s in a row open it");
    }

    #[tokio::test]
    async fn a_back_off_sleep_holds_no_slot() {
        // One slot. A call that failed once and sleeps before its retry
        // must not keep a second call from running meanwhile.
        let guard = UpstreamGuard::new(
            "test",
            GuardSettings {
                max_in_flight: 1,
                max_queue_wait: Duration::from_millis(20),
                ..settings()
            },
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let (first_failed, mut failed) = tokio::sync::watch::channel(false);
        let attempts = AtomicU32::new(0);
        let retrying = guard.call(Endpoint::TokenInfo, deadline, MAX_ATTEMPTS, || {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            let first_failed = &first_failed;
            async move {
                if n == 0 {
                    first_failed.send_replace(true);
                    Err(UpstreamError::throttled(
                        Endpoint::TokenInfo,
                        Some(Duration::from_millis(300)),
                        None,
                    ))
                } else {
                    Ok(n)
                }
            }
        });
        let other = async {
            let _ = failed.wait_for(|f| *f).await;
            tokio::task::yield_now().await;
            guard
                .call(Endpoint::TokenInfo, deadline, 1, || async { Ok(99) })
                .await
        };
        let (retried, other) = tokio::join!(retrying, other);
        assert_eq!(retried.unwrap(), 1);
        assert_eq!(other.unwrap(), 99, "ran while the first call slept");
    }

    #[tokio::test]
    async fn a_single_attempt_call_is_not_retried() {
        let guard = UpstreamGuard::new("test", settings());
        let attempts = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        let result: Result<(), _> = guard
            .call(Endpoint::Api, deadline, 1, || {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err(transient()) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }
}
