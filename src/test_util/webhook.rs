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
/// own `data` and `identity` are JSON strings again. Each signature also
/// carries a unique `jti`, so two signed in the same second (by two test
/// runs sharing a Redis, say) are two deliveries; a retry of one delivery
/// is the same signed string sent again.
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
    /// How long before now it was signed (`iat`).
    issued_ago: Duration,
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
            issued_ago: Duration::ZERO,
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
        Self::plan_event("PaidPlanPurchased", instance_id, product_id)
    }

    /// `PaidPlanChanged` from `previous_product_id` to `product_id`.
    pub fn plan_changed(
        instance_id: impl Into<String>,
        product_id: &str,
        previous_product_id: &str,
    ) -> Self {
        let mut event = Self::plan_event("PaidPlanChanged", instance_id, product_id);
        event.data["previousVendorProductId"] = json!(previous_product_id);
        event.data["previousCycle"] = json!("MONTHLY");
        event
    }

    /// A plan event of any of Wix's types (`PaidPlanPurchased`,
    /// `PaidPlanChanged`, `PaidPlanAutoRenewalCancelled`,
    /// `PlanConvertedToPaid`, `PlanReactivated`, `PlanTransferred`) with
    /// Wix's fields: `vendorProductId`, `cycle`, `operationTimeStamp` (now),
    /// `expiresOn` (a month on), `invoiceId`.
    pub fn plan_event(event_type: &str, instance_id: impl Into<String>, product_id: &str) -> Self {
        let now = unix_now();
        Self::new(
            event_type,
            instance_id,
            json!({
                "vendorProductId": product_id,
                "cycle": "MONTHLY",
                "operationTimeStamp": rfc3339(now),
                "expiresOn": rfc3339(now + 30 * 86_400),
                "invoiceId": format!("mock-invoice-{}", next_id()),
            }),
        )
    }

    /// Signed `ago` before now (its `iat`), as a delivery Wix made earlier
    /// and retried, or delivered late.
    pub fn issued_ago(mut self, ago: Duration) -> Self {
        self.issued_ago = ago;
        self
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
        let now = unix_now().saturating_sub(self.issued_ago.as_secs());
        let mut claims = json!({ "data": envelope.to_string(), "iat": now, "jti": next_id() });
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

/// A different id each call: a signature's `jti`, a mock request's id.
pub(super) fn next_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("mock-{now:x}-{n}")
}

/// `secs` (Unix) as RFC 3339 in UTC, as Wix writes its timestamps.
fn rfc3339(secs: u64) -> String {
    // Days to a civil date (Howard Hinnant's algorithm), then the time.
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_writes_utc_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_212_800), "2026-12-02T12:00:00Z");
    }

    #[test]
    fn every_signature_is_a_new_delivery() {
        let event = MockWebhook::app_removed("i");
        assert_ne!(event.sign(), event.sign(), "a unique jti each");
    }
}
