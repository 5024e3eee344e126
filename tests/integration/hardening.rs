//! Hardening: floods of invented tokens, anonymous visitors, revocation
//! windows, degraded mode's limits, and per-route budgets.

use std::{future::Future, pin::Pin, task::Poll, time::Duration};

use axum::{Router, body::Body, routing::get};
use http::Request;
use tower::ServiceExt;
use wix_elevate::{
    Caller, SubjectType,
    test_util::{CallerSpec, Fault, MockEndpoint},
};

use crate::support::{harness, harness_with};

async fn status(app: &Router, path: &str, token: &str) -> u16 {
    let req = Request::get(path)
        .header("authorization", token)
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status().as_u16()
}

async fn whoami(caller: Caller) -> String {
    caller.subject_id().to_owned()
}

#[tokio::test]
async fn a_flood_of_invented_tokens_spends_only_the_new_token_budget() {
    let h = harness_with(|b| {
        b.token_info_budget_for_new_tokens(crate::support::nz(1), crate::support::nz(20))
    })
    .await;
    let known = h.mint(SubjectType::Member);
    assert_eq!(h.get("/whoami", Some(&known)).await.status, 200);
    let before = h.wix.calls(MockEndpoint::TokenInfo);
    let flood = 1_000;
    let mut refused_at_once = 0;
    for i in 0..flood {
        let answer = h
            .get("/whoami", Some(&format!("OauthNG.JWS.invented-{i}")))
            .await;
        match answer.status {
            401 => {}
            503 => {
                answer.assert_problem(503, "upstream_unavailable");
                assert!(answer.header("retry-after").is_some());
                refused_at_once += 1;
            }
            other => panic!("{other}: {answer:?}"),
        }
        if i == flood / 2 {
            // Mid-flood: a cached caller is untouched; a new one is refused fast.
            assert_eq!(h.get("/whoami", Some(&known)).await.status, 200);
            let newcomer = h.mint(SubjectType::Member);
            let answer = h.get("/whoami", Some(&newcomer)).await;
            answer.assert_problem(503, "upstream_unavailable");
            println!(
                "mid-flood: cached caller 200, new caller 503 with Retry-After {:?}",
                answer.header("retry-after")
            );
        }
    }
    let spent = h.wix.calls(MockEndpoint::TokenInfo) - before;
    println!(
        "flood of {flood} invented tokens: {spent} Token Info calls, {refused_at_once} answered 503 at once"
    );
    // The burst, plus one a second while the flood lasted.
    assert!(
        spent <= 30,
        "{spent} Token Info calls for {flood} invented tokens"
    );
    assert!(refused_at_once >= flood - 30);
    assert_eq!(
        h.wix.token_info_calls_for(&known),
        1,
        "the known caller cost nothing"
    );
}

#[tokio::test]
async fn renewing_a_known_identity_never_counts_against_the_budget() {
    let h = harness_with(|b| {
        b.token_info_budget_for_new_tokens(crate::support::nz(1), crate::support::nz(1))
            .token_info_ttl(Duration::from_millis(500))
    })
    .await;
    let known = h.mint(SubjectType::Member);
    assert_eq!(h.get("/whoami", Some(&known)).await.status, 200);
    // The TTL passes (the behaviour under test); the budget refills one.
    crate::support::skip(Duration::from_millis(1100)).await;
    assert_eq!(
        h.get("/whoami", Some("OauthNG.JWS.new-a")).await.status,
        401
    );
    h.get("/whoami", Some("OauthNG.JWS.new-b"))
        .await
        .assert_problem(503, "upstream_unavailable");
    // The budget is spent, yet the known caller's renewal goes to Wix.
    assert_eq!(h.get("/whoami", Some(&known)).await.status, 200);
    assert_eq!(h.wix.token_info_calls_for(&known), 2);
}

#[tokio::test]
async fn visitors_of_one_instance_share_an_aggregate_limit() {
    let h = harness().await;
    let layer = h
        .elevator
        .layer()
        .rate_limit_per_caller(crate::support::nz(3))
        .rate_limit_visitors_per_instance(crate::support::nz(3));
    let app = Router::new().route("/visit", get(whoami).route_layer(layer));
    let mut admitted = 0;
    for _ in 0..12 {
        // Every request a new anonymous session: a new visitor id.
        let visitor = h
            .wix
            .mint(CallerSpec::new(SubjectType::Visitor).instance("site-v"));
        if status(&app, "/visit", &visitor).await == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3, "12 sessions, 3 admitted");
    let member = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("site-v"));
    assert_eq!(
        status(&app, "/visit", &member).await,
        200,
        "members are not visitors"
    );
    let elsewhere = h
        .wix
        .mint(CallerSpec::new(SubjectType::Visitor).instance("site-w"));
    assert_eq!(
        status(&app, "/visit", &elsewhere).await,
        200,
        "another site"
    );
}

#[tokio::test]
async fn clones_of_one_layer_share_its_budget_and_separate_limits_do_not() {
    let h = harness().await;
    let shared = h
        .elevator
        .layer()
        .rate_limit_per_caller(crate::support::nz(2));
    let own = |l: wix_elevate::ElevateLayer| l.rate_limit_per_caller(crate::support::nz(2));
    let app = Router::new()
        .route("/a", get(whoami).route_layer(shared.clone()))
        .route("/b", get(whoami).route_layer(shared))
        .route("/c", get(whoami).route_layer(own(h.elevator.layer())))
        .route("/d", get(whoami).route_layer(own(h.elevator.layer())));
    let token = h.mint(SubjectType::Member);
    // One budget across /a and /b, documented on `rate_limit_per_caller`.
    for path in ["/a", "/b"] {
        assert_eq!(status(&app, path, &token).await, 200, "{path}");
    }
    assert_eq!(status(&app, "/a", &token).await, 429);
    assert_eq!(status(&app, "/b", &token).await, 429);
    // A limit set per route is per route.
    for path in ["/c", "/c", "/d", "/d"] {
        assert_eq!(status(&app, path, &token).await, 200, "{path}");
    }
    assert_eq!(status(&app, "/c", &token).await, 429);
}

#[tokio::test]
async fn a_zero_identity_age_asks_wix_on_every_request_still_coalesced() {
    let h = harness().await;
    let strict = Router::new()
        .route(
            "/payouts",
            get(whoami).route_layer(h.elevator.layer().max_identity_age(Duration::ZERO)),
        )
        .route("/plain", get(whoami).route_layer(h.elevator.layer()))
        .with_state(());
    let token = h.mint(SubjectType::Member);
    for _ in 0..3 {
        assert_eq!(status(&strict, "/plain", &token).await, 200);
    }
    assert_eq!(
        h.wix.token_info_calls_for(&token),
        1,
        "the TTL serves the plain route"
    );
    for _ in 0..3 {
        assert_eq!(status(&strict, "/payouts", &token).await, 200);
    }
    assert_eq!(
        h.wix.token_info_calls_for(&token),
        4,
        "one call per request"
    );
    // A revoked token stops working at once on the strict route, and Wix's
    // refusal, once known, holds on every route.
    h.wix.revoke(&token);
    assert_eq!(status(&strict, "/payouts", &token).await, 401);
    assert_eq!(status(&strict, "/plain", &token).await, 401);

    // Twenty concurrent requests share one call: all polled once (each is
    // then waiting on Wix or on the one call), then released.
    let fresh = h.mint(SubjectType::Member);
    h.wix.hold(MockEndpoint::TokenInfo);
    let mut calls: Vec<Pin<Box<dyn Future<Output = u16> + Send>>> = (0..20)
        .map(|_| {
            let (app, token) = (strict.clone(), fresh.clone());
            Box::pin(async move { status(&app, "/payouts", &token).await })
                as Pin<Box<dyn Future<Output = u16> + Send>>
        })
        .collect();
    std::future::poll_fn(|cx| {
        for call in &mut calls {
            assert!(call.as_mut().poll(cx).is_pending());
        }
        Poll::Ready(())
    })
    .await;
    h.wix.wait_for_calls(MockEndpoint::TokenInfo, 6).await;
    h.wix.release(MockEndpoint::TokenInfo);
    for call in calls {
        assert_eq!(call.await, 200);
    }
    assert_eq!(h.wix.token_info_calls_for(&fresh), 1, "coalesced");
}

#[tokio::test]
async fn degraded_mode_serves_stale_identities_only_when_wix_failed() {
    let h = harness_with(|b| {
        b.serve_stale_identities_for(Duration::from_secs(60))
            .token_info_ttl(Duration::from_millis(300))
            .guards(
                wix_elevate::WixGuards::default()
                    .max_in_flight(1)
                    .max_queue_wait(Duration::from_millis(50)),
            )
    })
    .await;
    let known = h.mint(SubjectType::Member);
    assert_eq!(h.get("/whoami", Some(&known)).await.status, 200);
    // Its TTL passes (the behaviour under test).
    crate::support::skip(Duration::from_millis(400)).await;

    // Local overload: the one slot is held by another caller's call.
    h.wix.hold(MockEndpoint::TokenInfo);
    let other = h.mint(SubjectType::Member);
    let (blocked, ()) = tokio::join!(h.get("/whoami", Some(&other)), async {
        h.wix.wait_for_calls(MockEndpoint::TokenInfo, 2).await;
        h.get("/whoami", Some(&known))
            .await
            .assert_problem(503, "upstream_unavailable");
        h.wix.release(MockEndpoint::TokenInfo);
    });
    assert_eq!(blocked.status, 200);

    // Wix itself failing: the stale identity is served.
    h.wix.fail(MockEndpoint::TokenInfo, Fault::Status(503));
    assert_eq!(h.get("/whoami", Some(&known)).await.status, 200);
}
