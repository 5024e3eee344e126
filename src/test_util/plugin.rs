//! Signed service-plugin calls and payment-provider requests from the mock
//! (features `test-util` and `plugins`): test plugin handlers offline with
//! Wix's envelope, signed with the mock's test-only key
//! ([`WEBHOOK_PUBLIC_KEY`](super::WEBHOOK_PUBLIC_KEY) verifies them).

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{
    MockWix, WEBHOOK_PRIVATE_KEY,
    webhook::{expiry, next_id, sign_claims, unix_now},
};

/// A service-plugin call as Wix makes it: a JWT with `iss: "wix.com"`,
/// `aud: <app id>`, `exp`, `iat`, and `data: {request, metadata}`, whose
/// metadata names the instance, the caller's identity, the currency, the
/// languages and a request id (unique per call, so two test runs never
/// collide).
///
/// ```
/// use wix_elevate::test_util::MockServicePlugin;
///
/// let call = MockServicePlugin::new("ECOM_ADDITIONAL_FEES", "inst-1", serde_json::json!({"lineItems": []}))
///     .visitor("v-1")
///     .currency("EUR")
///     .sign();
/// assert_eq!(call.split('.').count(), 3);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct MockServicePlugin {
    app_id: String,
    issuer: Option<String>,
    request: Value,
    metadata: Value,
    expires_in: Option<Duration>,
}

impl MockServicePlugin {
    /// A call of the plugin `extension_type` (`ECOM_ADDITIONAL_FEES`, ...)
    /// for `instance_id`, carrying `request` (Wix's REST names), addressed
    /// to the mock's default app id `mock-app-id`, by an anonymous visitor,
    /// in USD and `en-US`, valid one hour.
    pub fn new(extension_type: &str, instance_id: &str, request: Value) -> Self {
        Self {
            app_id: "mock-app-id".into(),
            issuer: Some("wix.com".into()),
            request,
            metadata: json!({
                "requestId": next_id(),
                "instanceId": instance_id,
                "appExtensionType": extension_type,
                "appExtensionId": "mock-extension-id",
                "currency": "USD",
                "languages": ["en-US"],
                "identity": {"identityType": "ANONYMOUS_VISITOR", "anonymousVisitorId": "mock-visitor"},
            }),
            expires_in: Some(Duration::from_secs(3600)),
        }
    }

    /// An Additional Fees call (`ECOM_ADDITIONAL_FEES`) for `instance_id`
    /// with these line items (`{id, quantity, price, ...}`), in USD.
    pub fn additional_fees(instance_id: &str, line_items: Value) -> Self {
        Self::new(
            "ECOM_ADDITIONAL_FEES",
            instance_id,
            json!({"lineItems": line_items, "purchaseFlowId": "mock-flow"}),
        )
    }

    /// The app the call is addressed to (`aud`).
    pub fn app_id(mut self, app_id: &str) -> Self {
        self.app_id = app_id.into();
        self
    }

    /// The issuer (`iss`; default `wix.com`); `None` leaves it out.
    pub fn issuer(mut self, issuer: Option<&str>) -> Self {
        self.issuer = issuer.map(str::to_owned);
        self
    }

    /// An anonymous visitor caused it.
    pub fn visitor(self, id: &str) -> Self {
        self.identity(json!({"identityType": "ANONYMOUS_VISITOR", "anonymousVisitorId": id}))
    }

    /// A site member caused it.
    pub fn member(self, id: &str) -> Self {
        self.identity(json!({"identityType": "MEMBER", "memberId": id}))
    }

    /// A Wix user caused it.
    pub fn wix_user(self, id: &str) -> Self {
        self.identity(json!({"identityType": "WIX_USER", "wixUserId": id}))
    }

    /// Who caused it, as Wix writes it (`{identityType, …Id}`).
    pub fn identity(mut self, identity: Value) -> Self {
        self.metadata["identity"] = identity;
        self
    }

    /// The currency (ISO 4217).
    pub fn currency(mut self, currency: &str) -> Self {
        self.metadata["currency"] = json!(currency);
        self
    }

    /// The languages, most preferred first.
    pub fn languages(mut self, languages: &[&str]) -> Self {
        self.metadata["languages"] = json!(languages);
        self
    }

    /// Wix's request id (default: unique per call).
    pub fn request_id(mut self, id: &str) -> Self {
        self.metadata["requestId"] = json!(id);
        self
    }

    /// Any other metadata field (`null` removes it).
    pub fn metadata_field(mut self, name: &str, value: Value) -> Self {
        if let Value::Object(metadata) = &mut self.metadata {
            if value.is_null() {
                metadata.remove(name);
            } else {
                metadata.insert(name.to_owned(), value);
            }
        }
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

    /// The JWT claims, for signing them some other way.
    pub fn claims(&self) -> Value {
        let now = unix_now();
        let mut claims = json!({
            "aud": self.app_id,
            "iat": now,
            "data": {"request": self.request, "metadata": self.metadata},
        });
        if let Some(issuer) = &self.issuer {
            claims["iss"] = json!(issuer);
        }
        if let Some(lifetime) = self.expires_in {
            claims["exp"] = json!(expiry(now, lifetime));
        }
        claims
    }

    /// Signed RS256 with the mock's key.
    pub fn sign(&self) -> String {
        self.sign_with(WEBHOOK_PRIVATE_KEY)
    }

    /// Signed RS256 with another RSA private key (PKCS#8 or PKCS#1 PEM).
    ///
    /// # Panics
    ///
    /// If `private_key_pem` is not an RSA private key: a test's mistake.
    pub fn sign_with(&self, private_key_pem: &str) -> String {
        sign_claims(&self.claims(), private_key_pem)
    }

    /// Sign it and `POST` it to `url` (the extension's base plus the
    /// method's path) as Wix does, the JWT as the body: the status and
    /// body of the answer.
    pub async fn deliver(&self, url: &str) -> Result<(u16, bytes::Bytes), reqwest::Error> {
        post(url, self.sign(), None).await
    }
}

/// A payment-provider request as Wix sends it: a plain JSON body, and a
/// `Digest: JWT=<jwt>` header whose signed `data` is
/// `{"SHA256": "<hex of the body's SHA-256>"}`.
///
/// ```
/// use wix_elevate::test_util::MockPaymentRequest;
///
/// let request = MockPaymentRequest::new(r#"{"wixTransactionId":"t-1"}"#);
/// assert!(request.digest_header().starts_with("JWT="));
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct MockPaymentRequest {
    body: String,
    signed_body: Option<String>,
    expires_in: Option<Duration>,
}

impl MockPaymentRequest {
    /// A request with this body, its digest signed, valid one hour.
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            signed_body: None,
            expires_in: Some(Duration::from_secs(3600)),
        }
    }

    /// Sign the digest of another body than the one sent (a tampered
    /// request).
    pub fn signing_body(mut self, body: impl Into<String>) -> Self {
        self.signed_body = Some(body.into());
        self
    }

    /// `exp` this long from now (`Duration::ZERO`: already expired).
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in = Some(lifetime);
        self
    }

    /// The body sent.
    pub fn body(&self) -> &[u8] {
        self.body.as_bytes()
    }

    /// The `Digest` header's value, signed with the mock's key.
    pub fn digest_header(&self) -> String {
        self.digest_header_with(WEBHOOK_PRIVATE_KEY)
    }

    /// The `Digest` header's value, signed with another key.
    ///
    /// # Panics
    ///
    /// If `private_key_pem` is not an RSA private key: a test's mistake.
    pub fn digest_header_with(&self, private_key_pem: &str) -> String {
        let signed = self.signed_body.as_deref().unwrap_or(&self.body);
        let digest: String = Sha256::digest(signed.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let now = unix_now();
        let mut claims = json!({"data": {"SHA256": digest}, "iat": now});
        if let Some(lifetime) = self.expires_in {
            claims["exp"] = json!(expiry(now, lifetime));
        }
        format!("JWT={}", sign_claims(&claims, private_key_pem))
    }

    /// `POST` it to `url` with its `Digest` header: the status and body of
    /// the answer.
    pub async fn deliver(&self, url: &str) -> Result<(u16, bytes::Bytes), reqwest::Error> {
        post(url, self.body.clone(), Some(self.digest_header())).await
    }
}

async fn post(
    url: &str,
    body: String,
    digest: Option<String>,
) -> Result<(u16, bytes::Bytes), reqwest::Error> {
    let mut request = reqwest::Client::new().post(url).body(body);
    request = match digest {
        Some(digest) => request
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("Digest", digest),
        None => request.header(http::header::CONTENT_TYPE, "text/plain"),
    };
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.bytes().await?))
}

impl MockWix {
    /// A service-plugin call addressed to this mock's app (see
    /// [`MockServicePlugin`]).
    ///
    /// ```
    /// # use wix_elevate::test_util::MockWix;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let wix = MockWix::start().await?;
    /// let call = wix.service_plugin("ECOM_ADDITIONAL_FEES", "inst-1", serde_json::json!({}));
    /// assert_eq!(call.claims()["aud"], wix.app_id());
    /// # Ok(())
    /// # }
    /// ```
    pub fn service_plugin(
        &self,
        extension_type: &str,
        instance_id: &str,
        request: Value,
    ) -> MockServicePlugin {
        MockServicePlugin::new(extension_type, instance_id, request).app_id(self.app_id())
    }

    /// A payment-provider request with this body (see
    /// [`MockPaymentRequest`]).
    pub fn payment_request(&self, body: impl Into<String>) -> MockPaymentRequest {
        MockPaymentRequest::new(body)
    }
}
