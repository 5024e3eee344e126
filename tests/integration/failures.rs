//! Rule 7: Wix failures answer 502/503/504 with fixed bodies, the handler
//! never runs, and nothing about a failure is cached. Faults here persist
//! until cleared, so retries (see `resilience`) cannot hide them.

use std::time::Duration;

use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, Fault, MockEndpoint},
};

use crate::support::{Harness, harness_with};

/// Short timeouts: a hung Wix is given up on within a second.
async fn fast_timeout() -> Harness {
    harness_with(|b| {
        b.http_timeout(Duration::from_millis(300))
            .auth_deadline(Duration::from_millis(800))
    })
    .await
}

fn expected(fault: Fault) -> (u16, &'static str) {
    match fault {
        Fault::Hang => (504, "upstream_timeout"),
        Fault::TooManyRequests { .. } => (503, "upstream_throttled"),
        _ => (502, "upstream_failed"),
    }
}

const FAULTS: [Fault; 8] = [
    Fault::Status(500),
    Fault::Status(502),
    Fault::Status(503),
    Fault::Malformed,
    Fault::NotJson,
    Fault::Drop,
    // Longer than the request's deadline: answered at once, not waited out.
    Fault::TooManyRequests {
        retry_after_secs: Some(60),
    },
    Fault::Hang,
];

#[tokio::test]
async fn token_info_failures_map_to_5xx_and_are_not_cached() {
    for fault in FAULTS {
        let h = fast_timeout().await;
        let token = h.mint(SubjectType::Member);
        h.wix.fail(MockEndpoint::TokenInfo, fault);
        let (status, code) = expected(fault);
        let answer = h.get("/whoami", Some(&token)).await;
        answer.assert_problem(status, code);
        assert!(
            !answer.body.contains("injected"),
            "no upstream text: {}",
            answer.body
        );
        assert_eq!(h.handler_calls(), 0, "{fault:?}");
        assert_eq!(h.wix.calls(MockEndpoint::CreateAccessToken), 0, "{fault:?}");
        // The failure was not remembered: the next request asks Wix again.
        let failed_calls = h.wix.token_info_calls_for(&token);
        h.wix.clear_faults();
        assert_eq!(
            h.get("/whoami", Some(&token)).await.status,
            200,
            "{fault:?}"
        );
        assert_eq!(
            h.wix.token_info_calls_for(&token),
            failed_calls + 1,
            "{fault:?}"
        );
    }
}

#[tokio::test]
async fn create_access_token_failures_map_to_5xx_and_are_not_cached() {
    for fault in FAULTS {
        let h = fast_timeout().await;
        let token = h
            .wix
            .mint(CallerSpec::new(SubjectType::Member).instance("inst-f"));
        h.wix.fail(MockEndpoint::CreateAccessToken, fault);
        let (status, code) = expected(fault);
        h.get("/whoami", Some(&token))
            .await
            .assert_problem(status, code);
        assert_eq!(h.handler_calls(), 0, "{fault:?}");
        let failed_calls = h.wix.access_token_calls_for("inst-f");
        h.wix.clear_faults();
        assert_eq!(
            h.get("/whoami", Some(&token)).await.status,
            200,
            "{fault:?}"
        );
        assert_eq!(
            h.wix.access_token_calls_for("inst-f"),
            failed_calls + 1,
            "{fault:?}"
        );
        // The identity was cached: the retry needed no second Token Info.
        assert_eq!(h.wix.token_info_calls_for(&token), 1, "{fault:?}");
    }
}

#[tokio::test]
async fn throttling_beyond_the_deadline_forwards_retry_after() {
    let h = fast_timeout().await;
    let token = h.mint(SubjectType::Member);
    let throttled = |secs| Fault::TooManyRequests {
        retry_after_secs: secs,
    };
    h.wix
        .fail_times(MockEndpoint::TokenInfo, throttled(Some(60)), 1);
    let answer = h.get("/whoami", Some(&token)).await;
    answer.assert_problem(503, "upstream_throttled");
    assert_eq!(answer.header("retry-after"), Some("60"));
    assert_eq!(h.wix.token_info_calls_for(&token), 1, "not retried");
    // Without Retry-After, Wix said nothing about when: not retried either.
    h.wix
        .fail_times(MockEndpoint::TokenInfo, throttled(None), 1);
    let answer = h.get("/whoami", Some(&h.mint(SubjectType::Member))).await;
    answer.assert_problem(503, "upstream_throttled");
    assert_eq!(answer.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn a_wix_that_does_not_answer_in_time_is_a_504() {
    let h = fast_timeout().await;
    h.wix.fail(
        MockEndpoint::TokenInfo,
        Fault::Delay(Duration::from_secs(2)),
    );
    h.get("/whoami", Some(&h.mint(SubjectType::Member)))
        .await
        .assert_problem(504, "upstream_timeout");
}

#[tokio::test]
async fn an_unreachable_wix_is_a_502() {
    // Bind a port, then free it: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let h = harness_with(|b| b.base_url(format!("http://{addr}"))).await;
    h.get("/whoami", Some("OauthNG.JWS.any"))
        .await
        .assert_problem(502, "upstream_failed");
    assert_eq!(h.handler_calls(), 0);
}

#[tokio::test]
async fn wrong_app_credentials_are_a_502_not_a_401() {
    let h = harness_with(|b| b).await;
    let wrong = wix_elevate::Elevator::builder(h.wix.app_id(), "wrong-secret")
        .base_url(h.wix.base_url())
        .build()
        .unwrap();
    use tower::ServiceExt;
    let app = axum::Router::new().route(
        "/",
        // A route that declares a Wix call, so the layer elevates.
        axum::routing::get(|| async { "ran" })
            .route_layer(wrong.layer().allow("GET /apps/v1/instance")),
    );
    let token = h.mint(SubjectType::Member);
    for _ in 0..2 {
        let req = http::Request::get("/")
            .header("authorization", &token)
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 502);
    }
    // A 401 from Wix is not retried, and not cached: one call per request.
    assert_eq!(h.wix.calls(MockEndpoint::CreateAccessToken), 2);
}
