//! What the fleet stores, as plaintexts (sealed before they reach Redis):
//! identities and app tokens with their times on the wall clock, since
//! replicas share no monotonic clock.

/// Verdicts as stored in Redis (fleet mode): wall-clock times, since
/// replicas share no monotonic clock.
pub(crate) mod identity {
    use std::time::Duration;
    use tokio::time::Instant;

    use serde::{Deserialize, Serialize};

    use crate::{
        caller::{Caller, Plan, SubjectType},
        error::RejectionKind,
        fleet::unix_ms,
        forget::Forgetting,
        identity::{CachedVerdict, Verdict},
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

/// App tokens as stored in Redis (fleet mode): the token and its expiry on
/// the wall clock, since replicas share no monotonic clock.
pub(crate) mod app_token {
    use std::{sync::Arc, time::Duration};
    use tokio::time::Instant;

    use serde::{Deserialize, Serialize};

    use crate::{elevated_token::ElevatedToken, fleet::unix_ms, forget::Forgetting};

    #[derive(Deserialize)]
    struct Stored {
        token: String,
        /// Unix ms.
        expires: u64,
    }

    /// What is sealed: borrowed, so no unwiped copy of the token is made.
    #[derive(Serialize)]
    struct StoredRef<'a> {
        token: &'a str,
        expires: u64,
    }

    /// The plaintext to store, and its TTL in Redis: until the token enters
    /// its expiry margin.
    pub(crate) fn seal(token: &ElevatedToken, expiry_margin: Duration) -> (Vec<u8>, Duration) {
        let left = token.expires_at().saturating_duration_since(Instant::now());
        let stored = StoredRef {
            token: token.expose_secret(),
            expires: unix_ms().saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
        };
        let ttl = left.saturating_sub(expiry_margin);
        (serde_json::to_vec(&stored).unwrap_or_default(), ttl)
    }

    /// A stored token, unless it is due for renewal (then the fleet renews
    /// it once) or inside its expiry margin.
    pub(crate) fn open(
        plaintext: &[u8],
        instance: &Arc<str>,
        renew_before: Duration,
        expiry_margin: Duration,
        forgetting: &Forgetting,
        begun: u64,
    ) -> Option<ElevatedToken> {
        let stored: Stored = serde_json::from_slice(plaintext).ok()?;
        let left = Duration::from_millis(stored.expires.checked_sub(unix_ms())?);
        if left <= renew_before.max(expiry_margin) {
            return None;
        }
        Some(ElevatedToken::issued(
            stored.token,
            instance.clone(),
            left,
            renew_before,
            expiry_margin,
            Some(forgetting.stamp(instance, begun)),
        ))
    }
}
