//! Surviving Wix faults and floods: retries inside a deadline, a circuit
//! breaker, bounded upstream concurrency, degraded mode, per-caller rate
//! limits.

use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, Fault, MockEndpoint, RefusedTokenAnswer},
};

use crate::support::{harness, harness_with};

#[tokio::test]
async fn transient_failures_are_retried_within_the_deadline() {
    for fault in [
        Fault::Status(502),
        Fault::Status(503),
        Fault::Status(504),
        Fault::Drop,
    ] {
        let h = harness().await;
        let token = h.mint(SubjectType::Member);
        h.wix.fail_times(MockEndpoint::TokenInfo, fault, 2);
        assert_eq!(
            h.get("/whoami", Some(&token)).await.status,
            200,
            "{fault:?}"
        );
        assert_eq!(
            h.wix.token_info_calls_for(&token),
            3,
            "{fault:?}: two failures, one success"
        );
    }
}

#[tokio::test]
async fn client_errors_and_500s_are_not_retried() {
    let h = harness().await;
    h.wix
        .set_refused_token_answer(RefusedTokenAnswer::Status(400));
    h.get("/whoami", Some("OauthNG.JWS.nope"))
        .await
        .assert_problem(401, "invalid_token");
    assert_eq!(h.wix.token_info_calls_for("OauthNG.JWS.nope"), 1);
    let token = h.mint(SubjectType::Member);
    h.wix
        .fail_times(MockEndpoint::TokenInfo, Fault::Status(500), 1);
    h.get("/whoami", Some(&token))
        .await
        .assert_problem(502, "upstream_failed");
    assert_eq!(h.wix.token_info_calls_for(&token), 1);
}

#[tokio::test]
async fn a_429_is_retried_when_its_retry_after_fits_the_deadline() {
    let h = harness_with(|b| b.auth_deadline(Duration::from_secs(5))).await;
    let token = h.mint(SubjectType::Member);
    h.wix.fail_times(
        MockEndpoint::TokenInfo,
        Fault::TooManyRequests {
            retry_after_secs: Some(1),
        },
        1,
    );
    let started = Instant::now();
    assert_eq!(h.get("/whoami", Some(&token)).await.status, 200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited out Retry-After"
    );
    assert_eq!(h.wix.token_info_calls_for(&token), 2);
}

#[tokio::test]
async fn the_whole_authentication_has_one_deadline() {
    // Each call may take 5 s, but the request as a whole only 400 ms.
    let h = harness_with(|b| {
        b.http_timeout(Duration::from_secs(5))
            .auth_deadline(Duration::from_millis(400))
    })
    .await;
    h.wix.fail(MockEndpoint::TokenInfo, Fault::Hang);
    let started = Instant::now();
    h.get("/whoami", Some(&h.mint(SubjectType::Member)))
        .await
        .assert_problem(504, "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(h.handler_calls(), 0);
}

#[tokio::test]
async fn the_breaker_fails_fast_while_open_then_lets_one_probe_through() {
    let cooldown = Duration::from_millis(300);
    let h =
        harness_with(|b| b.guards(wix_elevate::WixGuards::default().breaker(2, cooldown))).await;
    h.wix.fail(MockEndpoint::TokenInfo, Fault::Status(503));
    // Two failed attempts open the circuit.
    h.get("/whoami", Some(&h.mint(SubjectType::Member)))
        .await
        .assert_problem(502, "upstream_failed");
    let calls = h.wix.calls(MockEndpoint::TokenInfo);
    assert_eq!(calls, 2);
    // Open: answered 503 at once, and Wix is not called.
    let answer = h.get("/whoami", Some(&h.mint(SubjectType::Member))).await;
    answer.assert_problem(503, "upstream_unavailable");
    assert!(answer.header("retry-after").is_some());
    assert_eq!(h.wix.calls(MockEndpoint::TokenInfo), calls);
    // After the cool-down one probe goes out; it fails, so the circuit reopens.
    crate::support::skip(cooldown + Duration::from_millis(50)).await;
    h.get("/whoami", Some(&h.mint(SubjectType::Member)))
        .await
        .assert_problem(502, "upstream_failed");
    assert_eq!(
        h.wix.calls(MockEndpoint::TokenInfo),
        calls + 1,
        "exactly one probe, not retried"
    );
    h.get("/whoami", Some(&h.mint(SubjectType::Member)))
        .await
        .assert_problem(503, "upstream_unavailable");
    // Wix recovers: the next probe closes the circuit.
    h.wix.clear_faults();
    crate::support::skip(cooldown + Duration::from_millis(50)).await;
    assert_eq!(
        h.get("/whoami", Some(&h.mint(SubjectType::Member)))
            .await
            .status,
        200
    );
    assert_eq!(
        h.get("/whoami", Some(&h.mint(SubjectType::Member)))
            .await
            .status,
        200
    );
    assert_eq!(h.handler_calls(), 2);
}

#[tokio::test]
async fn callers_beyond_the_upstream_cap_wait_a_bounded_time_then_get_503() {
    let h = harness_with(|b| {
        b.guards(
            wix_elevate::WixGuards::default()
                .max_in_flight(1)
                .max_queue_wait(Duration::from_millis(100)),
        )
    })
    .await;
    let first = h.mint(SubjectType::Member);
    let second = h.mint(SubjectType::Member);
    h.wix.hold(MockEndpoint::TokenInfo);
    let (first_answer, second_answer) = tokio::join!(h.get("/whoami", Some(&first)), async {
        h.wix.wait_for_calls(MockEndpoint::TokenInfo, 1).await;
        let answer = h.get("/whoami", Some(&second)).await;
        h.wix.release(MockEndpoint::TokenInfo);
        answer
    });
    second_answer.assert_problem(503, "upstream_unavailable");
    assert_eq!(first_answer.status, 200);
    assert_eq!(h.wix.token_info_calls_for(&second), 0, "never sent");
}

#[tokio::test]
async fn degraded_mode_serves_a_known_identity_while_wix_fails() {
    for degraded in [true, false] {
        let h = harness_with(|b| {
            let b = b.token_info_ttl(Duration::from_millis(200));
            if degraded {
                b.serve_stale_identities_for(Duration::from_secs(60))
            } else {
                b
            }
        })
        .await;
        let token = h.mint(SubjectType::Member);
        assert_eq!(h.get("/whoami", Some(&token)).await.status, 200);
        crate::support::skip(Duration::from_millis(300)).await; // the identity's TTL passes
        h.wix.fail(MockEndpoint::TokenInfo, Fault::Status(503));
        let answer = h.get("/whoami", Some(&token)).await;
        if degraded {
            assert_eq!(answer.status, 200, "{answer:?}");
        } else {
            answer.assert_problem(502, "upstream_failed");
        }
        // A token never seen before is not served, degraded or not.
        let unknown = h.mint(SubjectType::Member);
        h.get("/whoami", Some(&unknown))
            .await
            .assert_problem(502, "upstream_failed");
    }
}

#[tokio::test]
async fn degraded_mode_never_serves_an_identity_past_its_exp() {
    let h = harness_with(|b| {
        b.token_info_ttl(Duration::from_secs(60))
            .serve_stale_identities_for(Duration::from_secs(60))
    })
    .await;
    let token = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).expires_in(Duration::from_secs(1)));
    assert_eq!(h.get("/whoami", Some(&token)).await.status, 200);
    h.wix.fail(MockEndpoint::TokenInfo, Fault::Status(503));
    crate::support::skip(Duration::from_millis(2100)).await;
    // Past its exp, the stale identity is not served: Wix's failure is.
    h.get("/whoami", Some(&token))
        .await
        .assert_problem(502, "upstream_failed");
}

#[tokio::test]
async fn the_rate_limit_applies_per_caller_whatever_token_it_holds() {
    let h = harness().await;
    let app = Router::new().route(
        "/limited",
        get(|| async { "ok" }).route_layer(
            h.elevator
                .layer()
                .rate_limit_per_caller(crate::support::nz(2)),
        ),
    );
    let call = |token: String| {
        let app = app.clone();
        async move {
            use tower::ServiceExt;
            let req = http::Request::get("/limited")
                .header("authorization", token)
                .body(axum::body::Body::empty())
                .unwrap();
            app.oneshot(req).await.unwrap()
        }
    };
    let spec = || {
        CallerSpec::new(SubjectType::Visitor)
            .subject_id("v-1")
            .instance("i-1")
    };
    assert_eq!(call(h.wix.mint(spec())).await.status(), 200);
    assert_eq!(call(h.wix.mint(spec())).await.status(), 200);
    // A third request, even with a fresh token for the same visitor: 429.
    let limited = call(h.wix.mint(spec())).await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    let body = axum::body::to_bytes(limited.into_body(), 1024)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("rate_limited"));
    // Another visitor is unaffected.
    let other = h.wix.mint(
        CallerSpec::new(SubjectType::Visitor)
            .subject_id("v-2")
            .instance("i-1"),
    );
    assert_eq!(call(other).await.status(), 200);
}
