//! Service plugins in the logs: Wix's request id on the span and the audit
//! line; no plugin token, payment digest, app token, key or secret in any
//! line at TRACE.

use std::time::Duration;

use axum::{Router, body::Body, routing::post};
use serde_json::{Value, json};
use tower::ServiceExt;
use wix_elevate::{
    plugin::{
        PaymentDigestLayer, PaymentVerifier, PluginCall, PluginFailure, PluginVerifier,
        ServicePlugin,
    },
    test_util::{MockPaymentRequest, OTHER_WEBHOOK_PRIVATE_KEY, WEBHOOK_PUBLIC_KEY},
    webhook::WebhookKeys,
};

use crate::{
    Captured,
    support::{Harness, harness},
};

async fn post_to(app: &Router, path: &str, body: String, digest: Option<String>) -> String {
    let mut req = http::Request::post(path);
    if let Some(digest) = digest {
        req = req.header("digest", digest);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn plugin_calls_log_their_request_id_and_never_a_token_key_or_secret() {
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::TRACE);
    let Harness { wix, elevator, .. } = harness().await;
    let keys = || WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap();
    let plugin = ServicePlugin::builder(
        &elevator,
        PluginVerifier::new(elevator.app_id(), keys()),
        "ECOM_ADDITIONAL_FEES",
    )
    .route_name("plugin:fees")
    .allow("GET /apps/v1/instance")
    .deadline(Duration::from_secs(2))
    .method(
        "/v1/calculate-additional-fees",
        |call: PluginCall<Value>| async move {
            call.api().get("/apps/v1/instance").await?;
            Ok::<_, PluginFailure>(json!({"additionalFees": [], "currency": "USD"}))
        },
    )
    .build()
    .unwrap();
    let payments = PaymentVerifier::new(elevator.app_id(), keys());
    let app = Router::new().nest_service("/fees", plugin).route(
        "/pay",
        post(|body: String| async move { body }).route_layer(PaymentDigestLayer::new(payments)),
    );
    let call = |instance: &str| {
        wix.service_plugin("ECOM_ADDITIONAL_FEES", instance, json!({"lineItems": []}))
    };
    let tokens = [
        call("inst-log")
            .request_id("wix-req-1\n forged=line")
            .sign(),
        call("inst-log").sign_with(OTHER_WEBHOOK_PRIVATE_KEY),
        call("inst-log").app_id("another-app").sign(),
        call("inst-log").expires_in(Duration::ZERO).sign(),
    ];
    let mut answers = String::new();
    for token in &tokens {
        answers.push_str(
            &post_to(
                &app,
                "/fees/v1/calculate-additional-fees",
                token.clone(),
                None,
            )
            .await,
        );
    }
    let payment = MockPaymentRequest::new(r#"{"wixTransactionId":"t-secret-body"}"#);
    let digests = [
        payment.digest_header(),
        payment.digest_header_with(OTHER_WEBHOOK_PRIVATE_KEY),
    ];
    for digest in &digests {
        answers.push_str(
            &post_to(
                &app,
                "/pay",
                r#"{"tampered":1}"#.into(),
                Some(digest.clone()),
            )
            .await,
        );
    }
    drop(_guard);
    let logs = captured.text();
    let audit = logs
        .lines()
        .find(|l| l.contains("elevated Wix call"))
        .unwrap_or_else(|| panic!("no audit line:\n{logs}"));
    for field in [
        r#"route="plugin:fees""#,
        r#"subject_type="APP""#,
        r#"subject_id="plugin:fees""#,
        r#"instance_id="inst-log""#,
        // Wix's id, escaped: it cannot start a line of its own.
        r#"request_id="wix-req-1\\n forged=line""#,
    ] {
        assert!(audit.contains(field), "{field} missing in {audit}");
    }
    assert!(
        logs.lines()
            .any(|l| l.contains("wix_elevate.plugin") && l.contains("request_id")),
        "the span carries the request id:\n{logs}"
    );
    assert!(
        !logs.lines().any(|l| l.starts_with(" forged=line")),
        "{logs}"
    );
    assert!(logs.contains("service plugin call refused"), "{logs}");
    for token in tokens.iter().chain(digests.iter()) {
        let parts: Vec<&str> = token.trim_start_matches("JWT=").split('.').collect();
        for part in &parts[1..] {
            assert!(!logs.contains(part), "a plugin token reached the logs");
            assert!(!answers.contains(part), "a plugin token reached a response");
        }
    }
    let key_body = WEBHOOK_PUBLIC_KEY.lines().nth(1).unwrap();
    assert!(!logs.contains(key_body), "the key reached the logs");
    assert!(
        !logs.contains(wix.app_secret()),
        "the app secret reached the logs"
    );
    assert!(
        !logs.contains("OauthNG.JWS.mock-app-"),
        "an app token reached the logs"
    );
    assert!(
        !logs.contains("t-secret-body"),
        "a payment body reached the logs"
    );
}
