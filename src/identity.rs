//! Step 2 of a request: who is calling.
//!
//! The caller token (read by [`token`](crate::token)) is looked up by its
//! keyed digest in the identity cache; on a miss, Wix's Token Info is asked
//! once however many requests wait for the same token, and its answer is
//! verified the way Wix's SDK does (`clientId`, `instanceId`) plus what the
//! SDK skips (`active`, `exp`, `subjectId`).
//!
//! A verdict is cached for [`token_info_ttl`](crate::ElevatorBuilder::token_info_ttl)
//! (never past the token's `exp`), a refusal for
//! [`refused_token_ttl`](crate::ElevatorBuilder::refused_token_ttl); a
//! failure of Wix never. A token Wix revokes therefore stays accepted for
//! up to the TTL (plus the grace in degraded mode).

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter, clock::Clock};
use http::HeaderMap;

use crate::{
    cache::{FlightCache, Fresh},
    caller::{Caller, SubjectType},
    client::{TokenInfoAnswer, WixClient},
    error::{Endpoint, Rejection, RejectionKind, UpstreamError},
    fleet::Fleet,
    metrics::CacheMetrics,
    token::{self, TokenDigest, TokenHasher},
    wire::TokenInfo,
};

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
    fetched_at: Instant,
    fresh_until: Instant,
}

impl CachedVerdict {
    pub(crate) fn new(verdict: Verdict, now: Instant, ttl: Duration) -> Self {
        Self {
            verdict,
            fetched_at: now,
            fresh_until: now.checked_add(ttl).unwrap_or(now),
        }
    }

    /// Fresh, and no older than `max_age` (if the route sets one) for a
    /// request that began at `started`.
    fn is_acceptable(&self, now: Instant, started: Instant, max_age: Option<Duration>) -> bool {
        self.is_fresh(now) && max_age.is_none_or(|age| !is_older(self.fetched_at, started, age))
    }

    /// Servable in degraded mode: a valid, unexpired identity at most
    /// `grace` past its TTL.
    fn is_servable_stale(&self, now: Instant, grace: Duration) -> bool {
        matches!(&self.verdict, Verdict::Valid(caller) if caller.is_live(now))
            && self
                .fresh_until
                .checked_add(grace)
                .is_some_and(|until| now < until)
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
        now < self.fresh_until
    }
}

/// The caller-identity side of an elevator: the token digest's keys, the
/// cache and its lifetimes.
pub(crate) struct Identities {
    /// Keys the cache: tokens are looked up by their keyed digest.
    hasher: TokenHasher,
    cache: FlightCache<TokenDigest, CachedVerdict>,
    ttl: Duration,
    refused_ttl: Duration,
    max_token_len: usize,
    stale_grace: Option<Duration>,
    /// Token Info calls for tokens never seen before.
    new_token_budget: DefaultDirectRateLimiter,
}

/// What the cache knows of a request's token.
pub(crate) enum Lookup {
    Known {
        verdict: Verdict,
        /// When Wix gave the verdict.
        fetched_at: Instant,
        digest: TokenDigest,
    },
    /// Nothing cached: ask Wix (see [`Identities::resolve`]).
    Unknown(TokenDigest),
}

/// How an [`Identities`] is set up.
pub(crate) struct IdentitySettings {
    pub(crate) capacity: usize,
    pub(crate) ttl: Duration,
    pub(crate) refused_ttl: Duration,
    pub(crate) max_token_len: usize,
    pub(crate) stale_grace: Option<Duration>,
    pub(crate) new_token_budget: Quota,
}

impl Identities {
    pub(crate) fn new(settings: IdentitySettings, hasher: TokenHasher) -> Self {
        Self {
            hasher,
            cache: FlightCache::new(settings.capacity, CacheMetrics::new("identity")),
            ttl: settings.ttl,
            refused_ttl: settings.refused_ttl,
            max_token_len: settings.max_token_len,
            stale_grace: settings.stale_grace,
            new_token_budget: RateLimiter::direct(settings.new_token_budget),
        }
    }

    /// The warm path: the token read and looked up, without waiting or
    /// allocating. A malformed header is refused here, before anything
    /// else.
    pub(crate) fn cached(&self, headers: &HeaderMap, now: Instant) -> Result<Lookup, Rejection> {
        let token = token::bare_token(headers, self.max_token_len)?;
        let digest = self.hasher.digest(token);
        Ok(match self.cache.get(&digest, now) {
            Some(cached) => Lookup::Known {
                verdict: cached.verdict,
                fetched_at: cached.fetched_at,
                digest,
            },
            None => Lookup::Unknown(digest),
        })
    }

    /// The miss: check the token in full, then ask Token Info through the
    /// cache's single flight (and, in fleet mode, Redis first). `started`
    /// is when the request arrived; `max_age`, the route's limit on how old
    /// a verdict may be.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn resolve(
        &self,
        headers: &HeaderMap,
        digest: TokenDigest,
        client: &WixClient,
        fleet: Option<&Fleet>,
        app_id: &str,
        max_age: Option<Duration>,
        started: Instant,
        deadline: Instant,
    ) -> Result<Verdict, Rejection> {
        // Checked in full before anything leaves the process.
        let token = token::caller_token(headers, self.max_token_len)?;
        let grace = self.stale_grace;
        let cached = self
            .cache
            .get_or_fetch(
                &digest,
                started,
                |cached, now| cached.is_acceptable(now, started, max_age),
                |known| async move {
                    match fleet {
                        // A route that wants a younger verdict than the
                        // cache's asks Wix itself.
                        Some(fleet) if max_age.is_none() => {
                            self.ask_fleet(fleet, digest, token, known, client, app_id, deadline)
                                .await
                        }
                        _ => self.ask(token, known, client, app_id, deadline).await,
                    }
                },
                // Degraded mode only because Wix failed, never for a local limit.
                |stale, error, now| {
                    error.is_wix_failure()
                        && grace.is_some_and(|grace| stale.is_servable_stale(now, grace))
                },
            )
            .await
            .map_err(Rejection::upstream)?;
        Ok(cached.verdict)
    }

    /// Fleet mode: the verdict another replica stored, else Wix's (asked
    /// by one replica of the fleet at a time), stored for the others.
    #[allow(clippy::too_many_arguments)]
    async fn ask_fleet(
        &self,
        fleet: &Fleet,
        digest: TokenDigest,
        token: &str,
        known: bool,
        client: &WixClient,
        app_id: &str,
        deadline: Instant,
    ) -> Result<CachedVerdict, UpstreamError> {
        let key = fleet.identity_key(&digest.hex());
        let ttl = self.ttl;
        fleet
            .shared(
                &key,
                key.as_bytes(),
                |plaintext| shared::open(plaintext, ttl),
                async {
                    let cached = self.ask(token, known, client, app_id, deadline).await?;
                    let (plaintext, ttl) = shared::seal(&cached);
                    Ok((cached, plaintext, ttl))
                },
            )
            .await
    }

    /// Ask Wix who `token` is, and for how long to believe the answer. A
    /// token never seen before (`known` false) spends the new-token budget.
    async fn ask(
        &self,
        token: &str,
        known: bool,
        client: &WixClient,
        app_id: &str,
        deadline: Instant,
    ) -> Result<CachedVerdict, UpstreamError> {
        if !known && let Err(not_until) = self.new_token_budget.check() {
            let wait = not_until.wait_time_from(self.new_token_budget.clock().now());
            return Err(UpstreamError::budget_spent(Endpoint::TokenInfo, wait));
        }
        let answer = client.token_info(token, deadline).await?;
        let (unix_now, now) = (unix_now(), Instant::now());
        let verdict = match answer {
            TokenInfoAnswer::Refused(status) => {
                tracing::debug!(target: "wix_elevate", status = status.as_u16(), "Wix Token Info refused the token");
                Verdict::Refused(RejectionKind::InvalidToken)
            }
            TokenInfoAnswer::Info(info) => verify(info, app_id, unix_now, now),
        };
        let ttl = match &verdict {
            Verdict::Valid(caller) => self.ttl.min(caller.time_left(now)),
            Verdict::Refused(_) => self.refused_ttl,
        };
        Ok(CachedVerdict::new(verdict, now, ttl))
    }

    /// The keyed digest of a bare token.
    pub(crate) fn digest(&self, token: &[u8]) -> TokenDigest {
        self.hasher.digest(token)
    }

    pub(crate) fn contains(&self, digest: TokenDigest) -> bool {
        self.cache.get(&digest, Instant::now()).is_some()
    }

    /// Drop the identity cached under this digest (hex).
    pub(crate) fn forget_digest(&self, hex: &str) {
        if let Some(digest) = TokenDigest::from_hex(hex) {
            self.cache.remove(&digest);
        }
    }

    /// Drop every identity of `instance`'s callers.
    pub(crate) fn forget_instance(&self, instance: &str) {
        self.cache.retain(|cached| match &cached.verdict {
            Verdict::Valid(caller) => caller.instance_id() != instance,
            Verdict::Refused(_) => true,
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}

/// Verdicts as stored in Redis (fleet mode): wall-clock times, since
/// replicas share no monotonic clock.
mod shared {
    use std::time::{Duration, Instant};

    use serde::{Deserialize, Serialize};

    use super::{CachedVerdict, Verdict};
    use crate::{
        caller::{Caller, SubjectType},
        error::RejectionKind,
        fleet::unix_ms,
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
    }

    /// The plaintext to store, and its TTL in Redis.
    pub(super) fn seal(cached: &CachedVerdict) -> (Vec<u8>, Duration) {
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
    /// never longer than this replica's own TTL).
    pub(super) fn open(plaintext: &[u8], max_ttl: Duration) -> Option<CachedVerdict> {
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
                Verdict::Valid(Caller::from_parts(
                    SubjectType::from_wix(&c.subject_type),
                    c.subject_id.into(),
                    c.instance_id.into(),
                    c.site_id.map(Into::into),
                    now.checked_add(live_for)?,
                ))
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
        })
    }
}

/// Check Token Info's answer the way the SDK does (`clientId`, `instanceId`)
/// plus what it skips (`active`, `exp`, `subjectId`). `unix_now` and `now`
/// are the same moment on the wall and monotonic clocks.
pub(crate) fn verify(info: TokenInfo, app_id: &str, unix_now: u64, now: Instant) -> Verdict {
    let refused = Verdict::Refused;
    if info.active != Some(true) {
        return refused(RejectionKind::InvalidToken);
    }
    let exp = match info.exp {
        Some(exp) if exp > 0 => exp.unsigned_abs(),
        _ => return refused(RejectionKind::InvalidToken),
    };
    if exp <= unix_now {
        return refused(RejectionKind::ExpiredToken);
    }
    if info.client_id.as_deref() != Some(app_id) {
        return refused(RejectionKind::ForeignToken);
    }
    let instance_id = match info.instance_id {
        Some(id) if !id.is_empty() => id,
        _ => return refused(RejectionKind::NoInstance),
    };
    let subject_id = match info.subject_id {
        Some(id) if !id.is_empty() => id,
        _ => return refused(RejectionKind::NoSubject),
    };
    let live_until = now
        .checked_add(Duration::from_secs(exp - unix_now))
        .unwrap_or(now);
    Verdict::Valid(Caller::from_parts(
        info.subject_type.unwrap_or(SubjectType::Unknown),
        subject_id.into(),
        Arc::from(instance_id),
        info.site_id.map(Into::into),
        live_until,
    ))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: &str) -> TokenInfo {
        serde_json::from_str(json).unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn verify_accepts_a_good_token() {
        let now = Instant::now();
        let json = r#"{"active":true,"exp":1800000100,"clientId":"app","instanceId":"i","subjectType":"MEMBER","subjectId":"m"}"#;
        let Verdict::Valid(caller) = verify(info(json), "app", NOW, now) else {
            panic!("refused")
        };
        assert_eq!(caller.time_left(now), Duration::from_secs(100));
        assert!(caller.is_live(now + Duration::from_secs(99)));
        assert!(!caller.is_live(now + Duration::from_secs(100)));
        assert_eq!(caller.subject_type(), SubjectType::Member);
        assert_eq!(caller.instance_id(), "i");
    }

    #[test]
    fn verify_refuses_each_broken_rule() {
        let cases = [
            (
                r#"{"active":false,"exp":1800000100,"clientId":"app","instanceId":"i"}"#,
                RejectionKind::InvalidToken,
            ),
            (
                r#"{"exp":1800000100,"clientId":"app","instanceId":"i"}"#,
                RejectionKind::InvalidToken,
            ),
            (
                r#"{"active":true,"clientId":"app","instanceId":"i"}"#,
                RejectionKind::InvalidToken,
            ),
            (
                r#"{"active":true,"exp":1800000000,"clientId":"app","instanceId":"i"}"#,
                RejectionKind::ExpiredToken,
            ),
            (
                r#"{"active":true,"exp":1800000100,"clientId":"other","instanceId":"i"}"#,
                RejectionKind::ForeignToken,
            ),
            (
                r#"{"active":true,"exp":1800000100,"instanceId":"i"}"#,
                RejectionKind::ForeignToken,
            ),
            (
                r#"{"active":true,"exp":1800000100,"clientId":"app"}"#,
                RejectionKind::NoInstance,
            ),
            (
                r#"{"active":true,"exp":1800000100,"clientId":"app","instanceId":""}"#,
                RejectionKind::NoInstance,
            ),
            (
                r#"{"active":true,"exp":1800000100,"clientId":"app","instanceId":"i"}"#,
                RejectionKind::NoSubject,
            ),
            (
                r#"{"active":true,"exp":1800000100,"clientId":"app","instanceId":"i","subjectId":""}"#,
                RejectionKind::NoSubject,
            ),
        ];
        for (json, want) in cases {
            match verify(info(json), "app", NOW, Instant::now()) {
                Verdict::Refused(kind) => assert_eq!(kind, want, "{json}"),
                Verdict::Valid(_) => panic!("accepted {json}"),
            }
        }
    }
}
