//! Settings that belong together, as values: how every call to Wix is
//! guarded ([`WixGuards`]) and how long app tokens are trusted
//! ([`AppTokenLifetimes`]). Given to [`ElevatorBuilder`](crate::ElevatorBuilder),
//! checked by its `build`.

use std::time::Duration;

use crate::upstream::GuardSettings;

/// The protections around every call to Wix, per endpoint family (Token
/// Info, Create Access Token, Wix APIs each have their own): a circuit
/// breaker and a cap on calls in flight. Give it to
/// [`ElevatorBuilder::guards`](crate::ElevatorBuilder::guards).
///
/// ```
/// use std::time::Duration;
/// use wix_elevate::{Elevator, WixGuards};
///
/// let guards = WixGuards::default()
///     .breaker(3, Duration::from_secs(10))
///     .max_in_flight(32)
///     .max_queue_wait(Duration::from_millis(500));
/// let elevator = Elevator::builder("app", "secret").guards(guards).build()?;
/// # let _ = elevator;
/// assert!(Elevator::builder("app", "secret").guards(WixGuards::default().max_in_flight(0)).build().is_err());
/// # Ok::<(), wix_elevate::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct WixGuards {
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) max_queue_wait: Duration,
}

impl Default for WixGuards {
    /// A breaker that opens after 5 failures for 5 s; 64 calls in flight,
    /// a caller waiting at most 1 s for a slot.
    fn default() -> Self {
        Self {
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(5),
            max_in_flight: 64,
            max_queue_wait: Duration::from_secs(1),
        }
    }
}

impl WixGuards {
    /// Open an endpoint family's circuit after `failures` consecutive
    /// calls that failed because of Wix (timeouts, transport errors, 5xx,
    /// 429), and refuse calls (503 at once) for `cooldown` before one
    /// probe.
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker_threshold = failures;
        self.breaker_cooldown = cooldown;
        self
    }

    /// At most this many calls to Wix in flight at once, per family.
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.max_in_flight = calls;
        self
    }

    /// How long a call waits for a free slot (never past its deadline)
    /// before the request is answered 503.
    pub fn max_queue_wait(mut self, wait: Duration) -> Self {
        self.max_queue_wait = wait;
        self
    }

    pub(crate) fn settings(&self) -> GuardSettings {
        GuardSettings {
            breaker_threshold: self.breaker_threshold,
            breaker_cooldown: self.breaker_cooldown,
            max_in_flight: self.max_in_flight,
            max_queue_wait: self.max_queue_wait,
        }
    }
}

/// How long an app token is trusted and when it is renewed. Give it to
/// [`ElevatorBuilder::app_token_lifetimes`](crate::ElevatorBuilder::app_token_lifetimes).
///
/// ```
/// use std::time::Duration;
/// use wix_elevate::{AppTokenLifetimes, Elevator};
///
/// let lifetimes = AppTokenLifetimes::default()
///     .renew_before(Duration::from_secs(600))
///     .expiry_margin(Duration::from_secs(60));
/// let elevator = Elevator::builder("app", "secret").app_token_lifetimes(lifetimes).build()?;
/// # let _ = elevator;
/// # Ok::<(), wix_elevate::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct AppTokenLifetimes {
    pub(crate) renew_before: Duration,
    pub(crate) expiry_margin: Duration,
    pub(crate) fallback: Duration,
}

impl Default for AppTokenLifetimes {
    /// Renewed 5 minutes before expiry, never handed out in its last 30 s,
    /// 1 hour when Wix states no usable lifetime.
    fn default() -> Self {
        Self {
            renew_before: Duration::from_secs(5 * 60),
            expiry_margin: Duration::from_secs(30),
            fallback: Duration::from_secs(3600),
        }
    }
}

impl AppTokenLifetimes {
    /// Renew an app token this long before it expires, in the background,
    /// while requests keep using the current one.
    pub fn renew_before(mut self, before: Duration) -> Self {
        self.renew_before = before;
        self
    }

    /// Never hand out an app token in its last `margin`, so it cannot
    /// expire on the way to Wix.
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.expiry_margin = margin;
        self
    }

    /// The lifetime to assume when Wix's Create Access Token answer has no
    /// usable `expires_in` (missing, zero, negative, or Duration-style like
    /// `"14400s"`); warned about once. Well under Wix's documented 4 hours;
    /// lifetimes Wix states are believed up to 24 hours.
    pub fn fallback(mut self, lifetime: Duration) -> Self {
        self.fallback = lifetime;
        self
    }
}
