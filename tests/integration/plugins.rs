//! Service plugins and payment-provider requests: verified before any
//! handler or Wix call, typed, elevated for the envelope's instance, and
//! answered within the plugin's deadline.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Body, routing::post};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::Request;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::ServiceExt;
use wix_elevate::{
    Elevator, SubjectType,
    plugin::{
        ApplicationError, PaymentDigestLayer, PaymentVerifier, PluginCall, PluginFailure,
        PluginVerifier, ServicePlugin,
    },
    test_util::{
        Fault, MockEndpoint, MockPaymentRequest, MockServicePlugin, MockWix,
        OTHER_WEBHOOK_PRIVATE_KEY, WEBHOOK_PRIVATE_KEY, WEBHOOK_PUBLIC_KEY,
    },
    webhook::WebhookKeys,
};

use crate::support::{mock_wix, serve};

const FEES_PATH: &str = "/plugins/additional-fees/v1/calculate-additional-fees";

fn keys() -> WebhookKeys {
    WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CalculateFees {
    line_items: Vec<LineItem>,
}

#[derive(Deserialize)]
struct LineItem {
    id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Fees {
    additional_fees: Vec<Value>,
    currency: String,
}

/// The instance, the identity, Wix's request id, and the instance Wix's
/// API answered for, as the handler saw them.
type LastCall = (String, SubjectType, Option<String>, Option<String>, String);

/// What the handler saw, for the test to read.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    last: std::sync::Mutex<Option<LastCall>>,
}

/// The Additional Fees plugin: 1.50 per line item in the call's currency,
/// after reading the site's instance with the app's identity.
fn fees_app(elevator: &Elevator, deadline: Duration) -> (Router, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let handler_seen = seen.clone();
    let plugin = ServicePlugin::builder(
        elevator,
        PluginVerifier::new(elevator.app_id(), keys()),
        "ECOM_ADDITIONAL_FEES",
    )
    .allow("GET /apps/v1/instance")
    .deadline(deadline)
    .method(
        "/v1/calculate-additional-fees",
        move |call: PluginCall<CalculateFees>| {
            let seen = handler_seen.clone();
            async move {
                seen.calls.fetch_add(1, Ordering::SeqCst);
                let instance: Value = call.api().get("/apps/v1/instance").await?.json()?;
                let metadata = call.metadata();
                let (subject_type, subject_id) = metadata.identity();
                *seen.last.lock().unwrap() = Some((
                    metadata.instance_id().to_owned(),
                    subject_type,
                    subject_id.map(str::to_owned),
                    metadata.request_id().map(str::to_owned),
                    instance["instance"]["instanceId"].as_str().unwrap_or_default().to_owned(),
                ));
                if call.request().line_items.is_empty() {
                    return Err(ApplicationError::new("NO_LINE_ITEMS")
                        .status(http::StatusCode::UNPROCESSABLE_ENTITY)
                        .data(json!({"why": "empty cart"}))
                        .into());
                }
                let currency = metadata.currency().unwrap_or("USD").to_owned();
                let fees = call
                    .request()
                    .line_items
                    .iter()
                    .map(|item| json!({"code": "handling", "name": "Handling", "price": "1.50", "lineItemIds": [item.id]}))
                    .collect();
                Ok::<_, PluginFailure>(Fees { additional_fees: fees, currency })
            }
        },
    )
    .build()
    .unwrap();
    let app = Router::new().nest_service("/plugins/additional-fees", plugin);
    (app, seen)
}

async fn post_body(app: &Router, path: &str, body: impl Into<Body>) -> (u16, Value, String) {
    let req = Request::post(path).body(body.into()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or_default(),
        content_type,
    )
}

fn items(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"id": format!("li-{i}"), "quantity": 1, "price": "10.00"}))
            .collect(),
    )
}

async fn setup() -> (MockWix, Elevator, Router, Arc<Seen>) {
    let wix = mock_wix().await;
    let elevator = wix.elevator_builder().build().unwrap();
    let (app, seen) = fees_app(&elevator, Duration::from_secs(2));
    (wix, elevator, app, seen)
}

#[tokio::test]
async fn a_signed_call_reaches_its_handler_typed_with_metadata_and_one_app_token_per_instance() {
    let (wix, _elevator, app, seen) = setup().await;
    for round in 0..5 {
        let call = wix
            .service_plugin(
                "ECOM_ADDITIONAL_FEES",
                "inst-shop",
                json!({"lineItems": items(3)}),
            )
            .member("m-7")
            .currency("EUR")
            .request_id(&format!("req-{round}"));
        let (status, body, content_type) = post_body(&app, FEES_PATH, call.sign()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(content_type, "application/json");
        assert_eq!(body["currency"], "EUR");
        assert_eq!(body["additionalFees"].as_array().unwrap().len(), 3);
        assert_eq!(body["additionalFees"][2]["lineItemIds"], json!(["li-2"]));
    }
    let last = seen.last.lock().unwrap().clone().unwrap();
    assert_eq!(
        last,
        (
            "inst-shop".to_owned(),
            SubjectType::Member,
            Some("m-7".to_owned()),
            Some("req-4".to_owned()),
            "inst-shop".to_owned()
        )
    );
    assert_eq!(seen.calls.load(Ordering::SeqCst), 5);
    // The app token was minted once for the instance and cached; no caller
    // token exists here, so Token Info is never asked.
    assert_eq!(wix.access_token_calls_for("inst-shop"), 1);
    assert_eq!(wix.calls(MockEndpoint::GetAppInstance), 5);
    assert_eq!(wix.calls(MockEndpoint::TokenInfo), 0);
}

#[tokio::test]
async fn concurrent_calls_for_a_new_instance_share_one_app_token() {
    let (wix, _elevator, app, seen) = setup().await;
    let calls = (0..20).map(|_| {
        let app = app.clone();
        let token = wix
            .service_plugin(
                "ECOM_ADDITIONAL_FEES",
                "inst-rush",
                json!({"lineItems": items(1)}),
            )
            .sign();
        tokio::spawn(async move { post_body(&app, FEES_PATH, token).await.0 })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(seen.calls.load(Ordering::SeqCst), 20);
    assert_eq!(wix.access_token_calls_for("inst-rush"), 1);
}

/// A token signed with the mock's key, any header and claims.
fn signed(header: Header, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(WEBHOOK_PRIVATE_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn every_refusal_has_its_status_and_code_and_reaches_no_handler_and_no_wix_call() {
    let (wix, _elevator, app, seen) = setup().await;
    let call = || {
        wix.service_plugin(
            "ECOM_ADDITIONAL_FEES",
            "inst-x",
            json!({"lineItems": items(1)}),
        )
    };
    let good = call().sign();
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims = call().claims();
    let mut data_string = claims.clone();
    data_string["data"] = json!(claims["data"].to_string());
    let mut no_type = claims.clone();
    no_type["data"]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("appExtensionType");
    let mut exp_text = claims.clone();
    exp_text["exp"] = json!("9999999999");
    claims["aud"] = json!([wix.app_id(), "another"]);
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "another app's aud",
            FEES_PATH,
            call().app_id("another-app").sign(),
            401,
            "plugin_invalid_claims",
        ),
        (
            "no iss",
            FEES_PATH,
            call().issuer(None).sign(),
            401,
            "plugin_invalid_claims",
        ),
        (
            "another iss",
            FEES_PATH,
            call().issuer(Some("evil.com")).sign(),
            401,
            "plugin_invalid_claims",
        ),
        (
            "no exp",
            FEES_PATH,
            call().without_exp().sign(),
            401,
            "plugin_invalid_claims",
        ),
        (
            "exp a string",
            FEES_PATH,
            signed(Header::new(Algorithm::RS256), &exp_text),
            401,
            "plugin_invalid_claims",
        ),
        (
            "expired",
            FEES_PATH,
            call().expires_in(Duration::ZERO).sign(),
            401,
            "plugin_expired",
        ),
        (
            "another key",
            FEES_PATH,
            call().sign_with(OTHER_WEBHOOK_PRIVATE_KEY),
            401,
            "plugin_bad_signature",
        ),
        (
            "alg none",
            FEES_PATH,
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                parts[1]
            ),
            401,
            "plugin_bad_signature",
        ),
        (
            "HS256 keyed with the public key",
            FEES_PATH,
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &call().claims(),
                &EncodingKey::from_secret(WEBHOOK_PUBLIC_KEY.as_bytes()),
            )
            .unwrap(),
            401,
            "plugin_bad_signature",
        ),
        (
            "RS512",
            FEES_PATH,
            signed(Header::new(Algorithm::RS512), &call().claims()),
            401,
            "plugin_bad_signature",
        ),
        (
            "data a JSON string",
            FEES_PATH,
            signed(Header::new(Algorithm::RS256), &data_string),
            400,
            "not_a_plugin_request",
        ),
        (
            "no appExtensionType",
            FEES_PATH,
            signed(Header::new(Algorithm::RS256), &no_type),
            400,
            "not_a_plugin_request",
        ),
        (
            "another plugin's call",
            FEES_PATH,
            wix.service_plugin("ECOM_SHIPPING_RATES", "inst-x", json!({}))
                .sign(),
            400,
            "not_a_plugin_request",
        ),
        (
            "claims sent unsigned",
            FEES_PATH,
            call().metadata_field("x", json!(1)).claims().to_string(),
            400,
            "not_a_plugin_request",
        ),
        (
            "lineItems not a list",
            FEES_PATH,
            wix.service_plugin(
                "ECOM_ADDITIONAL_FEES",
                "inst-x",
                json!({"lineItems": "all"}),
            )
            .sign(),
            400,
            "invalid_plugin_request",
        ),
        (
            "not a JWT",
            FEES_PATH,
            "{\"request\":{}}".to_owned(),
            400,
            "not_a_plugin_request",
        ),
        (
            "unknown method",
            "/plugins/additional-fees/v1/refund",
            good.clone(),
            404,
            "unknown_plugin_method",
        ),
        (
            "too large",
            FEES_PATH,
            "a".repeat(256 * 1024 + 1),
            413,
            "plugin_request_too_large",
        ),
    ];
    for (case, path, body, status, code) in cases {
        let (got, problem, content_type) = post_body(&app, path, body).await;
        assert_eq!(
            (got, problem["code"].as_str()),
            (status, Some(code)),
            "{case}: {problem}"
        );
        assert_eq!(content_type, "application/problem+json", "{case}");
    }
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0, "no handler ran");
    for endpoint in [
        MockEndpoint::TokenInfo,
        MockEndpoint::CreateAccessToken,
        MockEndpoint::GetAppInstance,
        MockEndpoint::Api,
        MockEndpoint::Other,
    ] {
        assert_eq!(wix.calls(endpoint), 0, "{endpoint:?}: no Wix call");
    }
    // aud as a list holding the app id is accepted, as Wix's SDK does.
    let (status, body, _) = post_body(
        &app,
        FEES_PATH,
        signed(Header::new(Algorithm::RS256), &claims),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_application_error_is_answered_in_wix_shape_with_its_status() {
    let (wix, _elevator, app, _seen) = setup().await;
    let empty = wix.service_plugin("ECOM_ADDITIONAL_FEES", "inst-e", json!({"lineItems": []}));
    let (status, body, content_type) = post_body(&app, FEES_PATH, empty.sign()).await;
    assert_eq!(status, 422);
    assert_eq!(content_type, "application/json");
    assert_eq!(
        body,
        json!({"applicationError": {"code": "NO_LINE_ITEMS", "data": {"why": "empty cart"}}})
    );
}

#[tokio::test]
async fn the_deadline_answers_wix_in_time_when_wix_itself_hangs() {
    let wix = mock_wix().await;
    let elevator = wix.elevator_builder().build().unwrap();
    let (app, seen) = fees_app(&elevator, Duration::from_millis(300));
    wix.fail(MockEndpoint::GetAppInstance, Fault::Hang);
    let call = wix.service_plugin(
        "ECOM_ADDITIONAL_FEES",
        "inst-slow",
        json!({"lineItems": items(1)}),
    );
    let started = Instant::now();
    let (status, body, _) = post_body(&app, FEES_PATH, call.sign()).await;
    let took = started.elapsed();
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("plugin_deadline_exceeded"))
    );
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(
        took < Duration::from_secs(2),
        "answered within the deadline, {took:?}"
    );
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_plugin_calls_only_what_it_declared() {
    let wix = mock_wix().await;
    let elevator = wix.elevator_builder().build().unwrap();
    let plugin = ServicePlugin::builder(
        &elevator,
        PluginVerifier::new(elevator.app_id(), keys()),
        "ECOM_ADDITIONAL_FEES",
    )
    .allow("GET /apps/v1/instance")
    .method(
        "/v1/calculate-additional-fees",
        |call: PluginCall<Value>| async move {
            // Not declared: refused before any traffic.
            call.api()
                .post("/members/v1/members")
                .json(&json!({}))
                .await?;
            Ok::<_, PluginFailure>(json!({}))
        },
    )
    .build()
    .unwrap();
    let app = Router::new().nest_service("/plugins/additional-fees", plugin);
    let call = wix.service_plugin("ECOM_ADDITIONAL_FEES", "inst-d", json!({}));
    let (status, body, _) = post_body(&app, FEES_PATH, call.sign()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("operation_not_declared"))
    );
    assert_eq!(wix.calls(MockEndpoint::Other), 0);
    assert_eq!(wix.calls(MockEndpoint::CreateAccessToken), 0);
}

#[tokio::test]
async fn settings_that_cannot_work_fail_the_build() {
    let wix = mock_wix().await;
    let elevator = wix.elevator_builder().build().unwrap();
    let verifier = || PluginVerifier::new(elevator.app_id(), keys());
    let method = |b: wix_elevate::plugin::ServicePluginBuilder| {
        b.method("/v1/x", |_: PluginCall<Value>| async {
            Ok::<_, PluginFailure>(json!({}))
        })
    };
    let builder = || ServicePlugin::builder(&elevator, verifier(), "X");
    assert!(
        method(builder().allow("GET members")).build().is_err(),
        "bad operation"
    );
    assert!(
        method(builder().deadline(Duration::ZERO)).build().is_err(),
        "zero deadline"
    );
    assert!(
        method(builder().deadline(Duration::from_secs(61)))
            .build()
            .is_err(),
        "long deadline"
    );
    assert!(builder().build().is_err(), "no method");
    let other = ServicePlugin::builder(&elevator, PluginVerifier::new("another-app", keys()), "X");
    assert!(method(other).build().is_err(), "verifier for another app");
    assert!(
        method(builder().allow("GET /apps/v1/instance"))
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn a_mock_call_is_delivered_over_http_to_the_served_plugin() {
    let (wix, _elevator, app, seen) = setup().await;
    let served = serve(app).await;
    let call = wix.service_plugin(
        "ECOM_ADDITIONAL_FEES",
        "inst-http",
        json!({"lineItems": items(2)}),
    );
    let (status, body) = call
        .deliver(&format!("{}{FEES_PATH}", served.url))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["additionalFees"].as_array().unwrap().len(), 2);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
    // The mock's own request ids never repeat.
    let ids: std::collections::HashSet<String> = (0..50)
        .map(|_| {
            MockServicePlugin::new("X", "i", json!({})).claims()["data"]["metadata"]["requestId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 50);
}

/// A payment route behind the digest layer, echoing the body it got.
fn payment_app(elevator: &Elevator) -> (Router, Arc<AtomicUsize>) {
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let verifier = PaymentVerifier::new(elevator.app_id(), keys());
    let app = Router::new().route(
        "/payments/v1/refund",
        post(move |body: String| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { body }
        })
        .route_layer(PaymentDigestLayer::new(verifier)),
    );
    (app, handled)
}

#[tokio::test]
async fn a_payment_request_reaches_its_handler_unchanged_only_when_its_digest_holds() {
    let wix = mock_wix().await;
    let elevator = wix.elevator_builder().build().unwrap();
    let (app, handled) = payment_app(&elevator);
    let body = r#"{"wixTransactionId": "t-1",  "amount": "10.00"}"#;
    let send = |body: &str, digest: Option<String>| {
        let app = app.clone();
        let mut req = Request::post("/payments/v1/refund");
        if let Some(digest) = digest {
            req = req.header("DiGeSt", digest);
        }
        let req = req.body(Body::from(body.to_owned())).unwrap();
        async move {
            let res = app.oneshot(req).await.unwrap();
            let status = res.status().as_u16();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, String::from_utf8(bytes.to_vec()).unwrap())
        }
    };
    let request = wix.payment_request(body);
    let (status, echoed) = send(body, Some(request.digest_header())).await;
    assert_eq!(
        (status, echoed.as_str()),
        (200, body),
        "the body reaches the handler byte for byte"
    );
    // The hex in upper case, and the prefix in lower case, are read alike.
    let header = request.digest_header();
    let token = header.strip_prefix("JWT=").unwrap();
    assert_eq!(send(body, Some(format!("jwt={token}"))).await.0, 200);
    let code = |answer: (u16, String)| {
        let problem: Value = serde_json::from_str(&answer.1).unwrap_or_default();
        (
            answer.0,
            problem["code"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let refused = [
        ("no Digest header", send(body, None).await),
        (
            "body altered",
            send(
                &body.replace("10.00", "99.00"),
                Some(request.digest_header()),
            )
            .await,
        ),
        (
            "another body signed",
            send(
                body,
                Some(
                    MockPaymentRequest::new(body)
                        .signing_body("{}")
                        .digest_header(),
                ),
            )
            .await,
        ),
        (
            "another key",
            send(
                body,
                Some(request.digest_header_with(OTHER_WEBHOOK_PRIVATE_KEY)),
            )
            .await,
        ),
        (
            "expired",
            send(
                body,
                Some(request.clone().expires_in(Duration::ZERO).digest_header()),
            )
            .await,
        ),
        ("not a JWT", send(body, Some("JWT=abc".into())).await),
        (
            "another scheme",
            send(body, Some("SHA-256=abc".into())).await,
        ),
    ];
    let want = [
        (401, "digest_missing"),
        (401, "digest_mismatch"),
        (401, "digest_mismatch"),
        (401, "plugin_bad_signature"),
        (401, "plugin_expired"),
        (400, "not_a_plugin_request"),
        (401, "digest_missing"),
    ];
    for ((case, answer), (status, expected)) in refused.into_iter().zip(want) {
        assert_eq!(code(answer), (status, expected.to_owned()), "{case}");
    }
    assert_eq!(
        handled.load(Ordering::SeqCst),
        2,
        "only the two valid requests were handled"
    );
    // Over real HTTP, with the mock's delivery.
    let served = serve(app).await;
    let (status, echoed) = request
        .deliver(&format!("{}/payments/v1/refund", served.url))
        .await
        .unwrap();
    assert_eq!((status, &echoed[..]), (200, body.as_bytes()));
}

#[tokio::test]
async fn a_payment_digest_in_upper_case_hex_holds_and_a_wrong_aud_does_not() {
    use sha2::{Digest, Sha256};
    let wix = mock_wix().await;
    let elevator = wix.elevator_builder().build().unwrap();
    let verifier = PaymentVerifier::new(elevator.app_id(), keys());
    let body = br#"{"a":1}"#;
    let hex: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let header = |claims: Value| {
        let mut headers = http::HeaderMap::new();
        let value = format!("JWT={}", signed(Header::new(Algorithm::RS256), &claims));
        headers.insert("digest", value.parse().unwrap());
        headers
    };
    let upper = header(json!({"data": {"SHA256": hex}, "exp": exp}));
    assert!(verifier.verify(&upper, body).is_ok());
    let ours = header(
        json!({"data": {"SHA256": hex}, "exp": exp, "aud": elevator.app_id(), "iss": "wix.com"}),
    );
    assert!(verifier.verify(&ours, body).is_ok());
    let theirs = header(json!({"data": {"SHA256": hex}, "exp": exp, "aud": "another-app"}));
    assert_eq!(
        verifier.verify(&theirs, body).unwrap_err().kind(),
        wix_elevate::plugin::PluginErrorKind::InvalidClaims
    );
    let no_exp = header(json!({"data": {"SHA256": hex}}));
    assert!(verifier.verify(&no_exp, body).is_err());
}

#[test]
fn the_plugin_load_driver_runs_end_to_end() {
    let out = std::process::Command::new(crate::support::example::example_binary("plugin_load"))
        .env("VERIFY_ROUNDS", "20")
        .env("WORKERS", "2")
        .env("REQUESTS", "10")
        .output()
        .expect("the driver runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("µs per call"), "{stdout}");
    assert!(stdout.contains("20 calls by 2 workers"), "{stdout}");
    // One app token for the whole run, one instance read per call (the
    // warm-up included).
    assert!(
        stdout.contains("Create Access Token 1, Get App Instance 21"),
        "{stdout}"
    );
}
