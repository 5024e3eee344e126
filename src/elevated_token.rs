//! The app-identity token for the caller's instance: [`ElevatedToken`].
//!
//! Cheap to clone (one `Arc`); its value never shows in `Debug`.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::{
    caller::{CENTURY, Caller},
    forget::Stamp,
};

/// An app-identity access token for the caller's instance, from Wix's
/// Create Access Token.
///
/// Its value never shows in `Debug` and it has no `Display`: the only ways
/// to read it are [`expose_secret`](Self::expose_secret) and
/// [`authorization_header`](Self::authorization_header), easy to grep for.
/// Never send it to the browser.
///
/// ```
/// use std::time::Duration;
/// use wix_elevate::ElevatedToken;
///
/// let token = ElevatedToken::new("app-token", "instance-1", Duration::from_secs(60));
/// assert_eq!(token.expose_secret(), "app-token");
/// assert!(!format!("{token:?}").contains("app-token"));
/// ```
#[derive(Clone)]
pub struct ElevatedToken(Arc<TokenData>);

struct TokenData {
    header: HeaderValue,
    secret: SecretString,
    instance_id: Arc<str>,
    expires_at: Instant,
    /// From here on, the first request renews the token in the background.
    renew_at: Instant,
    /// From here on, the token is never handed out.
    usable_until: Instant,
    /// Set by the one request that started this token's renewal.
    renewal_claimed: AtomicBool,
    /// Whether it may still be served from the cache (see
    /// [`forget`](crate::forget)).
    stamp: Option<Stamp>,
}

impl ElevatedToken {
    /// A token valid for `lifetime` from now. Handy in tests; the layer
    /// makes these from Wix's answers.
    ///
    /// A value that is not a valid header value yields a token whose
    /// [`authorization_header`](Self::authorization_header) is empty.
    pub fn new(
        token: impl Into<String>,
        instance_id: impl Into<Arc<str>>,
        lifetime: Duration,
    ) -> Self {
        Self::issued(
            token.into(),
            instance_id.into(),
            lifetime,
            Duration::ZERO,
            Duration::ZERO,
            None,
        )
    }

    /// A token from Wix valid for `lifetime`, renewed from `renew_before`
    /// its expiry and never handed out in its last `margin`. For short
    /// lifetimes both are scaled down (to half and a tenth of it).
    pub(crate) fn issued(
        token: String,
        instance_id: Arc<str>,
        lifetime: Duration,
        renew_before: Duration,
        margin: Duration,
        stamp: Option<Stamp>,
    ) -> Self {
        let now = Instant::now();
        // Never a panic on a huge lifetime: it saturates at a century.
        let lifetime = lifetime.min(CENTURY);
        let expires_at = now.checked_add(lifetime).unwrap_or(now);
        let mut header =
            HeaderValue::from_str(&token).unwrap_or_else(|_| HeaderValue::from_static(""));
        header.set_sensitive(true);
        Self(Arc::new(TokenData {
            header,
            secret: SecretString::from(token),
            instance_id,
            expires_at,
            renew_at: expires_at
                .checked_sub(renew_before.min(lifetime / 2))
                .unwrap_or(now),
            usable_until: expires_at
                .checked_sub(margin.min(lifetime / 10))
                .unwrap_or(now),
            renewal_claimed: AtomicBool::new(false),
            stamp,
        }))
    }

    /// The raw token. Pass it only to Wix, in `Authorization`.
    pub fn expose_secret(&self) -> &str {
        self.0.secret.expose_secret()
    }

    /// The token as an `Authorization` value (the raw token, as the Wix SDK
    /// sends it), marked sensitive so HTTP/2 never indexes it.
    pub fn authorization_header(&self) -> HeaderValue {
        self.0.header.clone()
    }

    /// The instance this token acts for.
    pub fn instance_id(&self) -> &str {
        &self.0.instance_id
    }

    pub(crate) fn instance_key(&self) -> &Arc<str> {
        &self.0.instance_id
    }

    /// Whether both are the very same issued token (not merely equal text).
    pub(crate) fn same_as(&self, other: &ElevatedToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// When Wix stops accepting this token, on the monotonic clock.
    pub fn expires_at(&self) -> Instant {
        self.0.expires_at
    }

    pub(crate) fn is_usable_at(&self, now: Instant) -> bool {
        now < self.0.usable_until && self.0.stamp.as_ref().is_none_or(Stamp::holds)
    }

    pub(crate) fn is_due_for_renewal(&self, now: Instant) -> bool {
        now >= self.0.renew_at
    }

    /// Claim the right to renew this token; true for exactly one caller
    /// until [`release_renewal`](Self::release_renewal).
    pub(crate) fn claim_renewal(&self) -> bool {
        !self.0.renewal_claimed.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn release_renewal(&self) {
        self.0.renewal_claimed.store(false, Ordering::Release);
    }

    /// The app token for a request an [`ElevateLayer`](crate::ElevateLayer)
    /// authorized, for plain tower services (axum handlers extract
    /// `ElevatedToken`): the one the layer attached, or, on a route that
    /// declares no Wix operation, one fetched now through the elevator's
    /// cache. `None` if no layer ran; `Some(Err(response))` is the
    /// rejection to answer with (502/503/504), or a 500 if the route's
    /// layer did not opt in with
    /// [`expose_app_token`](crate::ElevateLayer::expose_app_token).
    ///
    /// ```
    /// use wix_elevate::ElevatedToken;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let req = http::Request::new(());
    /// assert!(ElevatedToken::for_request(req.extensions()).await.is_none(), "no layer ran");
    /// # }
    /// ```
    pub async fn for_request(
        extensions: &http::Extensions,
    ) -> Option<Result<ElevatedToken, http::Response<bytes::Bytes>>> {
        let scope = extensions.get::<crate::route::RouteScope>()?;
        if !scope.route.expose_app_token {
            tracing::error!(
                target: "wix_elevate::rejection",
                route = &*scope.route.route_name,
                "a handler asked for the raw app token (ElevatedToken) on a route whose layer did not opt in: call Wix through WixApi, or opt in with ElevateLayer::expose_app_token()"
            );
            return Some(Err(crate::response::problem(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "Server misconfiguration: this route may not hold the app token.",
                "app_token_not_exposed",
                None,
            )));
        }
        if let Some(token) = &scope.token {
            return Some(Ok(token.clone()));
        }
        let route = &scope.route;
        let caller = extensions.get::<Caller>()?;
        Some(
            route
                .elevate_on_demand(caller)
                .await
                .map_err(|rejection| crate::reject::respond(route, rejection)),
        )
    }
}

impl fmt::Debug for ElevatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElevatedToken")
            .field("token", &"[REDACTED]")
            .field("instance_id", &self.0.instance_id)
            .field("expires_at", &self.0.expires_at)
            .finish()
    }
}

/// App tokens as stored in Redis (fleet mode): the token and its expiry on
/// the wall clock, since replicas share no monotonic clock.
pub(crate) mod stored {
    use std::{sync::Arc, time::Duration};
    use tokio::time::Instant;

    use serde::{Deserialize, Serialize};

    use super::ElevatedToken;
    use crate::{fleet::unix_ms, forget::Forgetting};

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
