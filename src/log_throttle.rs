//! [`LogThrottle`]: at most one WARN line per interval for each kind of
//! rejection that never reached Wix (circuit open, overloaded, budget
//! spent), with the count of lines it held back. A flood of invented
//! tokens or an outage then costs the operator a few lines, not one per
//! request; the metrics still count every rejection exactly.

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use governor::{Quota, RateLimiter};

use crate::clock::{DirectLimiter, TokioClock};

use crate::error::UpstreamErrorKind;

/// How often each kind may write a line.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

struct Slot {
    limiter: DirectLimiter,
    suppressed: AtomicU64,
}

/// Per-elevator: one slot per local rejection kind.
pub(crate) struct LogThrottle {
    slots: [Slot; 3],
}

impl LogThrottle {
    pub(crate) fn new(interval: Duration) -> Self {
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        let slot = || Slot {
            limiter: RateLimiter::direct_with_clock(quota, TokioClock),
            suppressed: AtomicU64::new(0),
        };
        Self {
            slots: [slot(), slot(), slot()],
        }
    }

    /// Whether a line about a failure of `kind` may be written now:
    /// `Some(held back since the last line)`, or `None` (counted as held
    /// back). Failures that reached Wix are never held back.
    pub(crate) fn admit(&self, kind: UpstreamErrorKind) -> Option<u64> {
        let slot = match kind {
            UpstreamErrorKind::CircuitOpen => &self.slots[0],
            UpstreamErrorKind::Overloaded => &self.slots[1],
            UpstreamErrorKind::BudgetSpent => &self.slots[2],
            _ => return Some(0),
        };
        if slot.limiter.check().is_ok() {
            Some(slot.suppressed.swap(0, Ordering::Relaxed))
        } else {
            slot.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_with_the_count_held_back() {
        let throttle = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(throttle.admit(UpstreamErrorKind::BudgetSpent), Some(0));
        for _ in 0..99 {
            assert_eq!(throttle.admit(UpstreamErrorKind::BudgetSpent), None);
        }
        // Another kind has its own slot; failures that reached Wix pass.
        assert_eq!(throttle.admit(UpstreamErrorKind::CircuitOpen), Some(0));
        assert_eq!(throttle.admit(UpstreamErrorKind::Status), Some(0));
        assert_eq!(throttle.admit(UpstreamErrorKind::Status), Some(0));
        let suppressed = &throttle.slots[2].suppressed;
        assert_eq!(suppressed.load(Ordering::Relaxed), 99);
    }
}
