//! What Wix said about a caller token ([`Verdict`]), as the identity
//! cache keeps it ([`CachedVerdict`]) and, in fleet mode, as Redis keeps it
//! ([`stored`]: wall-clock times, since replicas share no monotonic clock).

use std::time::Duration;
use tokio::time::Instant;

use crate::{cache::Fresh, caller::Caller, error::RejectionKind};

/// What Wix said about a caller token.
#[derive(Clone, Debug)]
pub(crate) enum Verdict {
    /// Active, for this app, bound to an instance and a subject.
    Valid(Caller),
    /// Definitively refused (unknown, inactive, expired, another app's, no
    /// instance or subject). Remembered briefly so a repeated bad token
    /// costs nothing.
    Refused(RejectionKind),
}

/// A verdict, when Wix gave it, and until when to believe it.
#[derive(Clone, Debug)]
pub(crate) struct CachedVerdict {
    pub(crate) verdict: Verdict,
    pub(crate) fetched_at: Instant,
    pub(crate) fresh_until: Instant,
    /// The forget sequence when the fetch that gave it began.
    pub(crate) begun: u64,
}

impl CachedVerdict {
    pub(crate) fn new(verdict: Verdict, now: Instant, ttl: Duration, begun: u64) -> Self {
        Self {
            verdict,
            fetched_at: now,
            fresh_until: now.checked_add(ttl).unwrap_or(now),
            begun,
        }
    }

    /// Whether Wix vouched for the token: only a once-valid identity is
    /// exempt from the new-token budget.
    pub(crate) fn is_vouched(&self) -> bool {
        matches!(self.verdict, Verdict::Valid(_))
    }

    /// Not forgotten (with [`Elevator::forget_instance`](crate::Elevator::forget_instance))
    /// since it was fetched.
    pub(crate) fn is_unforgotten(&self) -> bool {
        match &self.verdict {
            Verdict::Valid(caller) => caller.is_unforgotten(),
            Verdict::Refused(_) => true,
        }
    }

    /// Fresh, and no older than `max_age` (if the route sets one) for a
    /// request that began at `started`.
    pub(crate) fn is_acceptable(
        &self,
        now: Instant,
        started: Instant,
        max_age: Option<Duration>,
    ) -> bool {
        self.is_fresh(now) && max_age.is_none_or(|age| !is_older(self.fetched_at, started, age))
    }

    /// Servable in degraded mode: a valid, unexpired, unforgotten
    /// identity at most `grace` past its TTL, and never older than the
    /// route's maximum age (a ceiling in every mode).
    pub(crate) fn is_servable_stale(
        &self,
        now: Instant,
        grace: Duration,
        started: Instant,
        max_age: Option<Duration>,
    ) -> bool {
        matches!(&self.verdict, Verdict::Valid(caller) if caller.is_live(now) && caller.is_unforgotten())
            && self
                .fresh_until
                .checked_add(grace)
                .is_some_and(|until| now < until)
            && max_age.is_none_or(|age| !is_older(self.fetched_at, started, age))
    }
}

/// Whether Wix's answer at `fetched_at` is more than `max_age` old for a
/// request that began at `started`.
pub(crate) fn is_older(fetched_at: Instant, started: Instant, max_age: Duration) -> bool {
    fetched_at
        .checked_add(max_age)
        .is_some_and(|limit| limit < started)
}

impl Fresh for CachedVerdict {
    fn is_fresh(&self, now: Instant) -> bool {
        now < self.fresh_until && self.is_unforgotten()
    }
}

pub(crate) mod stored {
    use std::time::Duration;
    use tokio::time::Instant;

    use serde::{Deserialize, Serialize};

    use super::{CachedVerdict, Verdict};
    use crate::{
        caller::{Caller, Plan, SubjectType},
        error::RejectionKind,
        fleet::unix_ms,
        forget::Forgetting,
    };

    #[derive(Serialize, Deserialize)]
    struct Stored {
        /// When Wix answered, and until when to believe it (Unix ms).
        at: u64,
        until: u64,
        caller: Option<StoredCaller>,
        refused: Option<String>,
    }

    #[derive(Serialize, Deserialize)]
    struct StoredCaller {
        subject_type: String,
        subject_id: String,
        instance_id: String,
        site_id: Option<String>,
        /// Wix's `exp`, Unix ms.
        exp: u64,
        /// `vendorProductId`: absent for the free plan; `unreadable` set
        /// when Wix sent something else.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unreadable_plan: bool,
    }

    /// The plaintext to store, and its TTL in Redis.
    pub(crate) fn seal(cached: &CachedVerdict) -> (Vec<u8>, Duration) {
        let (now, now_ms) = (Instant::now(), unix_ms());
        let ms = |at: Instant, later: bool| {
            let delta = if later {
                at.saturating_duration_since(now)
            } else {
                now.saturating_duration_since(at)
            };
            let delta = u64::try_from(delta.as_millis()).unwrap_or(u64::MAX);
            if later {
                now_ms.saturating_add(delta)
            } else {
                now_ms.saturating_sub(delta)
            }
        };
        let ttl = cached.fresh_until.saturating_duration_since(now);
        let stored = Stored {
            at: ms(cached.fetched_at, false),
            until: ms(cached.fresh_until, true),
            caller: match &cached.verdict {
                Verdict::Valid(caller) => Some(StoredCaller {
                    subject_type: caller.subject_type().as_str().to_owned(),
                    subject_id: caller.subject_id().to_owned(),
                    instance_id: caller.instance_id().to_owned(),
                    site_id: caller.site_id().map(str::to_owned),
                    exp: ms(caller.expires_at(), true),
                    plan: caller.plan().product_id().map(str::to_owned),
                    unreadable_plan: *caller.plan() == Plan::Unreadable,
                }),
                Verdict::Refused(_) => None,
            },
            refused: match &cached.verdict {
                Verdict::Refused(kind) => Some(kind.code().to_owned()),
                Verdict::Valid(_) => None,
            },
        };
        (serde_json::to_vec(&stored).unwrap_or_default(), ttl)
    }

    /// A stored verdict, if it is still to be believed (never past `exp`,
    /// never longer than this replica's own TTL), stamped for a fetch that
    /// began at `begun`.
    pub(crate) fn open(
        plaintext: &[u8],
        max_ttl: Duration,
        forgetting: &Forgetting,
        begun: u64,
    ) -> Option<CachedVerdict> {
        let stored: Stored = serde_json::from_slice(plaintext).ok()?;
        let (now, now_ms) = (Instant::now(), unix_ms());
        let left = |until_ms: u64| Duration::from_millis(until_ms.checked_sub(now_ms)?).into();
        let fresh_for: Option<Duration> = left(stored.until);
        let fresh_for = fresh_for.filter(|d| !d.is_zero())?.min(max_ttl);
        let fetched_at = now
            .checked_sub(Duration::from_millis(now_ms.saturating_sub(stored.at)))
            .unwrap_or(now);
        let verdict = match (stored.caller, stored.refused) {
            (Some(c), None) => {
                let live_for: Option<Duration> = left(c.exp);
                let live_for = live_for.filter(|d| !d.is_zero())?;
                let stamp = forgetting.stamp(&c.instance_id, begun);
                Verdict::Valid(
                    Caller::from_parts(
                        SubjectType::from_wix(&c.subject_type),
                        c.subject_id.into(),
                        c.instance_id.into(),
                        c.site_id.map(Into::into),
                        now.checked_add(live_for)?,
                        match (c.plan, c.unreadable_plan) {
                            (_, true) => Plan::Unreadable,
                            (Some(id), false) => Plan::paid(id),
                            (None, false) => Plan::Free,
                        },
                    )
                    .with_stamp(stamp),
                )
            }
            (None, Some(code)) => Verdict::Refused(RejectionKind::from_code(&code)?),
            _ => return None,
        };
        let fresh_for = match &verdict {
            Verdict::Valid(caller) => fresh_for.min(caller.time_left(now)),
            Verdict::Refused(_) => fresh_for,
        };
        Some(CachedVerdict {
            verdict,
            fetched_at,
            fresh_until: now.checked_add(fresh_for)?,
            begun,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SubjectType, forget::Forgetting};

    const TTL: Duration = Duration::from_secs(10);

    /// A valid verdict fetched at `now`, for an instance under `forgetting`.
    fn valid(forgetting: &Forgetting, now: Instant, live_for: Duration) -> CachedVerdict {
        let caller = Caller::from_parts(
            SubjectType::Member,
            "m".into(),
            "i".into(),
            None,
            now + live_for,
            crate::Plan::Free,
        )
        .with_stamp(forgetting.stamp("i", forgetting.now()));
        CachedVerdict::new(Verdict::Valid(caller), now, TTL, forgetting.now())
    }

    #[test]
    fn a_verdict_is_fresh_until_its_ttl_and_only_while_its_instance_is_remembered() {
        let forgetting = Forgetting::new(16);
        let now = Instant::now();
        let verdict = valid(&forgetting, now, Duration::from_secs(3600));
        assert!(verdict.is_vouched());
        assert!(verdict.is_fresh(now));
        assert!(verdict.is_fresh(now + TTL - Duration::from_millis(1)));
        assert!(!verdict.is_fresh(now + TTL), "stale at its TTL");
        let refused =
            CachedVerdict::new(Verdict::Refused(RejectionKind::InvalidToken), now, TTL, 0);
        assert!(!refused.is_vouched());
        forgetting.forget_instance("i");
        assert!(!verdict.is_fresh(now), "forgotten");
        assert!(refused.is_fresh(now), "a refusal belongs to no instance");
    }

    #[test]
    fn the_routes_maximum_age_bounds_cached_and_stale_verdicts_alike() {
        let forgetting = Forgetting::new(16);
        let now = Instant::now();
        let verdict = valid(&forgetting, now, Duration::from_secs(3600));
        let (later, age) = (now + Duration::from_secs(5), Duration::from_secs(5));
        assert!(!is_older(now, later, age), "exactly the maximum age");
        assert!(is_older(now, later + Duration::from_millis(1), age));
        assert!(!is_older(now, now, Duration::ZERO));
        assert!(verdict.is_acceptable(later, later, None));
        assert!(verdict.is_acceptable(later, later, Some(age)));
        assert!(!verdict.is_acceptable(later, later, Some(Duration::from_secs(4))));
        assert!(!verdict.is_acceptable(now + TTL, now, None), "past its TTL");
        // Degraded mode: past the TTL, within the grace, within the age.
        let grace = Duration::from_secs(60);
        let stale = now + TTL + Duration::from_secs(1);
        assert!(verdict.is_servable_stale(stale, grace, stale, None));
        assert!(!verdict.is_servable_stale(stale, Duration::ZERO, stale, None));
        assert!(verdict.is_servable_stale(
            now + TTL + grace - Duration::from_millis(1),
            grace,
            now,
            None
        ));
        assert!(
            !verdict.is_servable_stale(now + TTL + grace, grace, now, None),
            "the grace ends"
        );
        assert!(!verdict.is_servable_stale(stale, grace, stale, Some(Duration::from_secs(1))));
        assert!(verdict.is_servable_stale(stale, grace, stale, Some(Duration::from_secs(3600))));
        // Never an expired caller, a refusal or a forgotten instance.
        let expiring = valid(&forgetting, now, TTL);
        assert!(!expiring.is_servable_stale(stale, grace, stale, None));
        let refused =
            CachedVerdict::new(Verdict::Refused(RejectionKind::InvalidToken), now, TTL, 0);
        assert!(!refused.is_servable_stale(stale, grace, stale, None));
        forgetting.forget_instance("i");
        assert!(!verdict.is_servable_stale(stale, grace, stale, None));
    }
}
