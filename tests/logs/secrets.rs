//! Rule 8: no token and no app secret in any log line (at TRACE), `Debug`
//! output, error body or response.

use std::time::Duration;

use tower::ServiceExt;
use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, Fault, MockEndpoint},
};

use crate::{Captured, common::harness_with};

#[tokio::test]
async fn no_secret_reaches_logs_debug_output_or_responses() {
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::TRACE);

    let h = harness_with(|b| b.http_timeout(Duration::from_millis(300))).await;
    h.wix
        .set_app_token_lifetime("inst-s", Duration::from_secs(4));
    let member = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("inst-s"));
    let visitor = h
        .wix
        .mint(CallerSpec::new(SubjectType::Visitor).instance("inst-s"));
    let expired = h.wix.mint(CallerSpec::new(SubjectType::Member).expired());
    let foreign = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).client_id("other"));
    let unknown = "OauthNG.JWS.unknown-caller-token".to_owned();
    let callers = [&member, &visitor, &expired, &foreign, &unknown];

    let mut bodies = String::new();
    let mut record = |answer: crate::common::Answer| {
        bodies.push_str(&answer.body);
        bodies.push_str(&format!("{:?}", answer.headers));
    };
    // Success, denial, refusals, each with and without `Bearer`.
    for caller in callers {
        record(h.get("/instance", Some(caller)).await);
        record(h.get("/members", Some(&format!("Bearer {caller}"))).await);
    }
    // Every kind of Wix failure, on both endpoints.
    for fault in [
        Fault::Status(500),
        Fault::Malformed,
        Fault::NotJson,
        Fault::Drop,
        Fault::Hang,
        Fault::TooManyRequests {
            retry_after_secs: Some(3),
        },
    ] {
        for endpoint in [MockEndpoint::TokenInfo, MockEndpoint::CreateAccessToken] {
            let fresh = h
                .wix
                .mint(CallerSpec::new(SubjectType::Member).instance(format!("inst-{fault:?}")));
            h.wix.fail_times(endpoint, fault, 1);
            record(h.get("/whoami", Some(&fresh)).await);
            record(h.get("/whoami", Some(&fresh)).await);
        }
    }
    // A background renewal of the app token (window opens after 2 s).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    record(h.get("/instance", Some(&member)).await);
    h.wix
        .wait_for_calls(MockEndpoint::CreateAccessToken, 2)
        .await;

    // Collect every app token Wix issued, by asking through the layer.
    let token_route = axum::Router::new().route(
        "/t",
        axum::routing::get(|t: wix_elevate::ElevatedToken| async move {
            // Debug output of the token, which must be redacted.
            format!("{}\n{t:?}", t.expose_secret())
        })
        .route_layer(h.elevator.layer().expose_app_token()),
    );
    let req = http::Request::get("/t")
        .header("authorization", &member)
        .body(axum::body::Body::empty())
        .unwrap();
    let body = axum::body::to_bytes(token_route.oneshot(req).await.unwrap().into_body(), 1 << 16)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let (app_token, token_debug) = body.split_once('\n').unwrap();
    assert!(
        app_token.starts_with("OauthNG.JWS.mock-app-"),
        "{app_token}"
    );

    let debug_prints = format!(
        "{:?} {:?} {:?}",
        h.elevator,
        h.elevator.layer(),
        token_debug
    );
    drop(_guard);
    let logs = captured.text();

    // The capture really saw the layer at work (so this test can fail).
    assert!(logs.contains("wix_elevate"), "nothing captured:\n{logs}");
    assert!(logs.contains("request rejected"), "{logs}");
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "{logs}");

    let secrets: Vec<&str> = callers
        .iter()
        .map(|s| s.as_str())
        .chain([h.wix.app_secret(), app_token])
        .collect();
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret:.24}…\n{logs}"
        );
        assert!(
            !bodies.contains(secret),
            "a secret reached a response: {secret:.24}…"
        );
        assert!(
            !debug_prints.contains(secret),
            "a secret reached Debug output: {debug_prints}"
        );
    }
    // Tokens share a prefix; no fragment of any token either.
    assert!(!logs.contains("OauthNG.JWS."), "{logs}");
    assert!(!bodies.contains("OauthNG.JWS."));
}
