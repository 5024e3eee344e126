//! Signed webhooks from the mock (features `test-util` and `webhooks`):
//! test your webhook handlers offline with Wix's exact format, signed
//! with a test-only RSA key whose public half is [`WEBHOOK_PUBLIC_KEY`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The public key of the mock's webhook signing key (PEM). Test-only:
/// its private half is published in this crate.
pub const WEBHOOK_PUBLIC_KEY: &str = include_str!("keys/webhook.pub.pem");

/// The mock's webhook signing key (PKCS#8 PEM), for signing webhooks of
/// your own shape. Test-only: never use it for anything real.
pub const WEBHOOK_PRIVATE_KEY: &str = include_str!("keys/webhook.key.pem");

/// Another test-only key pair, for a rotation or a wrong key: its public
/// half.
pub const OTHER_WEBHOOK_PUBLIC_KEY: &str = include_str!("keys/other.pub.pem");

/// Its private half (PKCS#8 PEM), for [`MockWebhook::sign_with`]. Test-only.
pub const OTHER_WEBHOOK_PRIVATE_KEY: &str = include_str!("keys/other.key.pem");

/// A webhook as Wix sends it: claims `{data, iat, exp}` whose `data` is a
/// JSON string holding `{eventType, instanceId, data, identity}`, whose
/// own `data` and `identity` are JSON strings again.
///
/// ```
/// use std::time::Duration;
/// use wix_elevate::test_util::MockWebhook;
///
/// let removed = MockWebhook::app_removed("inst-1").sign();
/// let upgraded = MockWebhook::plan_purchased("inst-1", "premium").sign();
/// let stale = MockWebhook::app_installed("inst-1").expires_in(Duration::ZERO).sign();
/// # let _ = (removed, upgraded, stale);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct MockWebhook {
    event_type: String,
    instance_id: Option<String>,
    data: Value,
    identity: Value,
    expires_in: Option<Duration>,
}

impl MockWebhook {
    /// An event of any type with this payload.
    pub fn new(event_type: impl Into<String>, instance_id: impl Into<String>, data: Value) -> Self {
        Self {
            event_type: event_type.into(),
            instance_id: Some(instance_id.into()),
            data,
            identity: json!({"identityType": "APP", "appId": "mock-app"}),
            expires_in: Some(Duration::from_secs(3600)),
        }
    }

    /// `AppInstalled` for `instance_id`.
    pub fn app_installed(instance_id: impl Into<String>) -> Self {
        Self::new("AppInstalled", instance_id, json!({"appId": "mock-app"}))
    }

    /// `AppRemoved` for `instance_id`.
    pub fn app_removed(instance_id: impl Into<String>) -> Self {
        Self::new("AppRemoved", instance_id, json!({"appId": "mock-app"}))
    }

    /// `PaidPlanPurchased` of `product_id` for `instance_id`.
    pub fn plan_purchased(instance_id: impl Into<String>, product_id: &str) -> Self {
        Self::new(
            "PaidPlanPurchased",
            instance_id,
            json!({"vendorProductId": product_id, "cycle": "MONTHLY", "operationTimeStamp": "2026-11-30T10:00:00Z"}),
        )
    }

    /// Who caused it (`{identityType, …Id}`; default: an app).
    pub fn identity(mut self, identity: Value) -> Self {
        self.identity = identity;
        self
    }

    /// `exp` this long from now (`Duration::ZERO`: already expired);
    /// default one hour.
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in = Some(lifetime);
        self
    }

    /// No `exp` claim at all.
    pub fn without_exp(mut self) -> Self {
        self.expires_in = None;
        self
    }

    /// The JWT claims, for signing it some other way.
    pub fn claims(&self) -> Value {
        let envelope = json!({
            "eventType": self.event_type,
            "instanceId": self.instance_id,
            "data": self.data.to_string(),
            "identity": self.identity.to_string(),
        });
        let now = unix_now();
        let mut claims = json!({ "data": envelope.to_string(), "iat": now });
        if let Some(lifetime) = self.expires_in {
            claims["exp"] = json!(expiry(now, lifetime));
        }
        claims
    }

    /// Signed RS256 with the mock's key ([`WEBHOOK_PUBLIC_KEY`] verifies it).
    pub fn sign(&self) -> String {
        self.sign_with(WEBHOOK_PRIVATE_KEY)
    }

    /// Sign it and `POST` it to `url` as Wix would (the raw JWT as the
    /// body): the status and body of the answer.
    ///
    /// ```
    /// # use wix_elevate::test_util::MockWebhook;
    /// # async fn demo(my_server: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// let (status, _) = MockWebhook::app_removed("inst-1")
    ///     .deliver(&format!("{my_server}/webhooks"))
    ///     .await?;
    /// assert_eq!(status, 200);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn deliver(&self, url: &str) -> Result<(u16, bytes::Bytes), reqwest::Error> {
        let response = reqwest::Client::new()
            .post(url)
            .header(http::header::CONTENT_TYPE, "text/plain")
            .body(self.sign())
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?))
    }

    /// Signed RS256 with another RSA private key (PKCS#8 or PKCS#1 PEM).
    ///
    /// # Panics
    ///
    /// If `private_key_pem` is not an RSA private key: a test's mistake.
    pub fn sign_with(&self, private_key_pem: &str) -> String {
        sign_claims(&self.claims(), private_key_pem)
    }
}

/// Now, in Unix seconds.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `exp` for a lifetime: already expired means a minute ago, beyond any
/// leeway.
pub(super) fn expiry(now: u64, lifetime: Duration) -> u64 {
    if lifetime.is_zero() {
        now.saturating_sub(60)
    } else {
        now.saturating_add(lifetime.as_secs())
    }
}

/// `claims` signed RS256 with an RSA private key (PKCS#8 or PKCS#1 PEM).
///
/// # Panics
///
/// If `private_key_pem` is not an RSA private key: a test's mistake.
pub(super) fn sign_claims(claims: &Value, private_key_pem: &str) -> String {
    let key =
        EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).expect("an RSA private key in PEM");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("claims serialize")
}
