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
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::time::Instant;

use governor::{Quota, RateLimiter, clock::Clock};

use crate::{
    cache::{FlightCache, Timing},
    caller::{Caller, SubjectType},
    client::{TokenInfoAnswer, WixClient},
    clock::{DirectLimiter, TokioClock},
    error::{ConfigError, Endpoint, Rejection, RejectionKind, UpstreamError},
    fleet::{Budget, Fleet, Gcra, Place, ToStore, local_is_trusted},
    forget::Forgetting,
    metrics::CacheMetrics,
    token::{self, TokenDigest, TokenHasher},
    verdict::{self, CachedVerdict, Verdict},
    wire::TokenInfo,
};

/// The new-token budget is spent: Wix is not asked (an event in the
/// current span).
fn budget_spent(wait: Duration) -> UpstreamError {
    tracing::debug!(
        target: "wix_elevate",
        retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        "new-token budget spent: Token Info not called"
    );
    UpstreamError::budget_spent(Endpoint::TokenInfo, wait)
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
    /// Token Info calls for tokens Wix never vouched for, in this process.
    new_token_budget: DirectLimiter,
    /// The same budget, fleet-wide (fleet mode, while Redis answers).
    fleet_budget: Gcra,
    forgetting: Arc<Forgetting>,
    /// The app whose tokens are accepted.
    app_id: Arc<str>,
    client: Arc<WixClient>,
    fleet: Option<Arc<Fleet>>,
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

/// One question to Token Info.
#[derive(Clone, Copy)]
struct Ask<'a> {
    token: &'a str,
    /// Whether Wix vouched for this token before (budget-exempt).
    vouched: bool,
    client: &'a WixClient,
    app_id: &'a str,
    deadline: Instant,
    /// The forget sequence when the fetch began.
    begun: u64,
}

/// The app and the collaborators an [`Identities`] asks through.
pub(crate) struct IdentitySources {
    /// Keys the cache (fleet-wide in fleet mode).
    pub(crate) hasher: TokenHasher,
    pub(crate) app_id: Arc<str>,
    pub(crate) client: Arc<WixClient>,
    pub(crate) fleet: Option<Arc<Fleet>>,
    pub(crate) forgetting: Arc<Forgetting>,
}

/// How an [`Identities`] is set up.
pub(crate) struct IdentitySettings {
    pub(crate) capacity: usize,
    pub(crate) ttl: Duration,
    pub(crate) refused_ttl: Duration,
    pub(crate) max_token_len: usize,
    pub(crate) stale_grace: Option<Duration>,
    /// Per second, and burst.
    pub(crate) new_token_budget: (NonZeroU32, NonZeroU32),
}

impl Identities {
    pub(crate) fn new(
        settings: IdentitySettings,
        sources: IdentitySources,
    ) -> Result<Self, ConfigError> {
        let (per_second, burst) = settings.new_token_budget;
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Ok(Self {
            hasher: sources.hasher,
            cache: FlightCache::new(settings.capacity, CacheMetrics::new("identity")),
            ttl: settings.ttl,
            refused_ttl: settings.refused_ttl,
            max_token_len: settings.max_token_len,
            stale_grace: settings.stale_grace,
            new_token_budget: RateLimiter::direct_with_clock(quota, TokioClock),
            fleet_budget: Gcra::per_second(per_second.get(), burst.get()),
            forgetting: sources.forgetting,
            app_id: sources.app_id,
            client: sources.client,
            fleet: sources.fleet,
        })
    }

    /// The longest caller token accepted.
    pub(crate) fn max_token_len(&self) -> usize {
        self.max_token_len
    }

    /// The warm path: the bare token (see [`token::request_token`]) looked
    /// up, without waiting or allocating.
    pub(crate) fn cached(&self, token: &[u8], now: Instant) -> Lookup {
        let digest = self.hasher.digest(token);
        if !local_is_trusted(self.fleet.as_deref(), now) {
            return Lookup::Unknown(digest);
        }
        match self.cache.get(&digest, now) {
            Some(cached) => Lookup::Known {
                verdict: cached.verdict,
                fetched_at: cached.fetched_at,
                digest,
            },
            None => Lookup::Unknown(digest),
        }
    }

    /// The miss: check the token in full, then ask Token Info through the
    /// cache's single flight (and, in fleet mode, Redis first), within the
    /// request's `timing`; `max_age` is the route's limit on how old a
    /// verdict may be.
    pub(crate) async fn resolve(
        &self,
        token: &[u8],
        digest: TokenDigest,
        max_age: Option<Duration>,
        timing: Timing,
    ) -> Result<Verdict, Rejection> {
        let Timing { started, deadline } = timing;
        let (client, app_id) = (&*self.client, &*self.app_id);
        // Checked in full before anything leaves the process.
        let token = token::checked(token)?;
        let grace = self.stale_grace;
        let cached = self
            .cache
            .get_or_fetch(
                &digest,
                started,
                |cached, now| {
                    cached.is_acceptable(now, started, max_age)
                        && local_is_trusted(self.fleet.as_deref(), now)
                },
                |previous| async move {
                    // Only a token Wix once vouched for is exempt from the
                    // budget: a refusal past its TTL, or a route's re-check
                    // of a refused token, costs Wix like a new one.
                    let vouched = previous.is_some_and(|p| p.is_vouched());
                    let begun = self.forgetting.now();
                    let ask = Ask {
                        token,
                        vouched,
                        client,
                        app_id,
                        deadline,
                        begun,
                    };
                    match self.fleet.as_deref() {
                        // A route that wants a younger verdict than the
                        // cache's asks Wix itself.
                        Some(fleet) if max_age.is_none() => {
                            self.ask_fleet(fleet, digest, ask).await
                        }
                        _ => {
                            self.spend_budget(vouched)?;
                            self.ask(&ask).await
                        }
                    }
                },
                // Degraded mode only because Wix failed, never for a local
                // limit, and never past the route's maximum age.
                |stale, error, now| {
                    error.is_wix_failure()
                        && grace.is_some_and(|grace| {
                            stale.is_servable_stale(now, grace, started, max_age)
                        })
                },
            )
            .await
            .map_err(Rejection::upstream)?;
        // A `forget_token` that ran while the answer was in flight: what
        // was stored must go (the forget removed what was there before).
        if self.forgetting.token_forgotten_since(digest, cached.begun) {
            self.cache
                .remove_if(&digest, |stored| stored.begun <= cached.begun);
        }
        Ok(cached.verdict)
    }

    /// Spend the new-token budget for a token Wix never vouched for.
    fn spend_budget(&self, vouched: bool) -> Result<(), UpstreamError> {
        if vouched {
            return Ok(());
        }
        self.new_token_budget.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.new_token_budget.clock().now());
            budget_spent(wait)
        })
    }

    /// Fleet mode: the verdict another replica stored, else Wix's (asked
    /// by one replica of the fleet at a time, after the fleet-wide budget),
    /// stored for the others.
    async fn ask_fleet(
        &self,
        fleet: &Fleet,
        digest: TokenDigest,
        ask: Ask<'_>,
    ) -> Result<CachedVerdict, UpstreamError> {
        let key = fleet.identity_key(&digest.hex());
        let place = Place {
            key: &key,
            marked: true,
            aad: b"identity",
            budget: (!ask.vouched).then_some(self.fleet_budget),
        };
        let (ttl, forgetting, begun) = (self.ttl, &*self.forgetting, ask.begun);
        fleet
            .shared(
                place,
                |plaintext| verdict::stored::open(plaintext, ttl, forgetting, begun),
                |budget| async move {
                    if budget == Budget::Local {
                        self.spend_budget(ask.vouched)?;
                    }
                    let cached = self.ask(&ask).await?;
                    let (plaintext, ttl) = verdict::stored::seal(&cached);
                    let instance = match &cached.verdict {
                        Verdict::Valid(caller) => Some(caller.instance_key().clone()),
                        Verdict::Refused(_) => None,
                    };
                    let to_store = ToStore {
                        plaintext,
                        ttl,
                        instance,
                    };
                    Ok((cached, Some(to_store)))
                },
                budget_spent,
            )
            .await
    }

    /// Ask Wix who the token is, and for how long to believe the answer.
    async fn ask(&self, ask: &Ask<'_>) -> Result<CachedVerdict, UpstreamError> {
        let answer = ask.client.token_info(ask.token, ask.deadline).await?;
        let (unix_now, now) = (unix_now(), Instant::now());
        let verdict = match answer {
            TokenInfoAnswer::Refused(status) => {
                tracing::debug!(target: "wix_elevate", status = status.as_u16(), "Wix Token Info refused the token");
                Verdict::Refused(RejectionKind::InvalidToken)
            }
            TokenInfoAnswer::Info(info) => match verify(info, ask.app_id, unix_now, now) {
                Verdict::Valid(caller) => {
                    let stamp = self.forgetting.stamp(caller.instance_id(), ask.begun);
                    Verdict::Valid(caller.with_stamp(stamp))
                }
                refused => refused,
            },
        };
        let ttl = match &verdict {
            Verdict::Valid(caller) => self.ttl.min(caller.time_left(now)),
            Verdict::Refused(_) => self.refused_ttl,
        };
        Ok(CachedVerdict::new(verdict, now, ttl, ask.begun))
    }

    /// The keyed digest of a bare token.
    pub(crate) fn digest(&self, token: &[u8]) -> TokenDigest {
        self.hasher.digest(token)
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn contains(&self, digest: TokenDigest) -> bool {
        self.cache.get(&digest, Instant::now()).is_some()
    }

    /// Forget the token with this digest: the entry goes, and a fetch in
    /// flight will not keep what it stores.
    pub(crate) fn forget_digest(&self, digest: TokenDigest) {
        self.forgetting.forget_token(digest);
        self.cache.remove(&digest);
    }

    /// Forget the token whose digest is `hex` (from another replica).
    pub(crate) fn forget_hex(&self, hex: &str) {
        if let Some(digest) = TokenDigest::from_hex(hex) {
            self.forget_digest(digest);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
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
        info.plan,
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
    fn only_tokens_wix_vouched_for_are_exempt_from_the_budget() {
        let elevator = crate::Elevator::builder("app", "secret")
            .token_info_budget_for_new_tokens(NonZeroU32::MIN, NonZeroU32::new(2).unwrap())
            .build()
            .unwrap();
        let identities = elevator.identities();
        assert!(identities.spend_budget(false).is_ok());
        assert!(identities.spend_budget(false).is_ok());
        let spent = identities.spend_budget(false).unwrap_err();
        assert!(spent.retry_after().is_some());
        for _ in 0..10 {
            assert!(identities.spend_budget(true).is_ok(), "vouched: exempt");
        }
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
                r#"{"active":true,"exp":0,"clientId":"app","instanceId":"i","subjectId":"m"}"#,
                RejectionKind::InvalidToken,
            ),
            (
                r#"{"active":true,"exp":-5,"clientId":"app","instanceId":"i","subjectId":"m"}"#,
                RejectionKind::InvalidToken,
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
