//! Forgetting that holds and floods that cost nothing, in one process: a
//! forget beats a Wix answer in flight, only tokens Wix vouched for are
//! exempt from the new-token budget, a route's maximum identity age is a
//! ceiling in degraded mode, caller-bound query values, literal segments,
//! and the raw app token as an opt-in.

use std::time::Duration;

use axum::{Json, Router, routing::get};
use serde_json::{Value, json};
use wix_elevate::{
    Caller, ElevatedToken, SubjectType, WixApi, WixApiError,
    test_util::{CallerSpec, Fault, MockEndpoint, MockReply},
};

use crate::support::{Harness, harness, harness_with};

async fn answer(app: &Router, path: &str, token: &str) -> (u16, Value) {
    crate::support::call(app, "GET", path, token).await
}

async fn status(app: &Router, path: &str, token: &str) -> u16 {
    answer(app, path, token).await.0
}

async fn whoami(caller: Caller) -> String {
    caller.subject_id().to_owned()
}

/// A request started, whose Token Info call Wix holds until released.
async fn in_flight(h: &Harness, token: &str) -> tokio::task::JoinHandle<u16> {
    h.wix.hold(MockEndpoint::TokenInfo);
    let before = h.wix.calls(MockEndpoint::TokenInfo);
    let app = h.app.clone();
    let token = token.to_owned();
    let request = tokio::spawn(async move { status(&app, "/whoami", &token).await });
    h.wix
        .wait_for_calls(MockEndpoint::TokenInfo, before + 1)
        .await;
    request
}

#[tokio::test]
async fn forget_instance_beats_a_token_info_answer_in_flight() {
    let h = harness().await;
    let token = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("inst-gone"));
    // Wix answers "valid" for a call made before the app was removed...
    let request = in_flight(&h, &token).await;
    // ...the removal is known here while that answer is on its way...
    h.elevator.forget_instance("inst-gone").await.unwrap();
    h.wix.release(MockEndpoint::TokenInfo);
    assert_eq!(request.await.unwrap(), 200, "the request that asked");
    // From here on Wix refuses it.
    h.wix.revoke(&token);
    // ...and nothing after the forget is admitted on the strength of it.
    h.get("/whoami", Some(&token))
        .await
        .assert_problem(401, "invalid_token");
    assert_eq!(h.wix.token_info_calls_for(&token), 2, "Wix asked again");
}

#[tokio::test]
async fn forget_token_beats_a_token_info_answer_in_flight() {
    let h = harness().await;
    let token = h.mint(SubjectType::Member);
    let request = in_flight(&h, &token).await;
    h.elevator.forget_token(&token).await.unwrap();
    h.wix.release(MockEndpoint::TokenInfo);
    assert_eq!(request.await.unwrap(), 200);
    h.wix.revoke(&token);
    h.get("/whoami", Some(&token))
        .await
        .assert_problem(401, "invalid_token");
    assert_eq!(h.wix.token_info_calls_for(&token), 2);
}

#[tokio::test]
async fn forget_instance_costs_the_same_whatever_the_cache_holds() {
    let h = harness_with(|b| {
        b.token_info_budget_for_new_tokens(crate::support::nz(100_000), crate::support::nz(100_000))
    })
    .await;
    let kept = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("kept"));
    let gone = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("gone"));
    for token in [&kept, &gone] {
        assert_eq!(h.get("/whoami", Some(token)).await.status, 200);
    }
    // Many cached identities of other instances.
    for i in 0..2_000 {
        let token = h
            .wix
            .mint(CallerSpec::new(SubjectType::Visitor).instance(format!("i-{i}")));
        assert_eq!(status(&h.app, "/whoami", &token).await, 200);
    }
    let started = std::time::Instant::now();
    for _ in 0..1_000 {
        h.elevator.forget_instance("gone").await.unwrap();
    }
    let each = started.elapsed() / 1_000;
    println!("forget_instance with 2,002 cached identities: {each:?} each");
    // The forgotten instance asks Wix again; the other one does not.
    assert_eq!(h.get("/whoami", Some(&gone)).await.status, 200);
    assert_eq!(h.get("/whoami", Some(&kept)).await.status, 200);
    assert_eq!(h.wix.token_info_calls_for(&gone), 2);
    assert_eq!(h.wix.token_info_calls_for(&kept), 1);
}

#[tokio::test]
async fn refusals_past_their_ttl_spend_the_new_token_budget() {
    let h = harness_with(|b| {
        b.token_info_budget_for_new_tokens(crate::support::nz(1), crate::support::nz(5))
            .refused_token_ttl(Duration::from_millis(1))
    })
    .await;
    let invented: Vec<String> = (0..5)
        .map(|i| format!("OauthNG.JWS.invented-{i}"))
        .collect();
    for token in &invented {
        h.get("/whoami", Some(token))
            .await
            .assert_problem(401, "invalid_token");
    }
    assert_eq!(
        h.wix.calls(MockEndpoint::TokenInfo),
        5,
        "the budget's burst"
    );
    // The refusals' TTL passes (the behaviour under test).
    crate::support::skip(Duration::from_millis(20)).await;
    let mut spent = 0;
    for _ in 0..10 {
        for token in &invented {
            let answer = h.get("/whoami", Some(token)).await;
            if answer.status == 503 {
                answer.assert_problem(503, "upstream_unavailable");
                spent += 1;
            }
        }
    }
    let calls = h.wix.calls(MockEndpoint::TokenInfo);
    println!("50 re-sent refused tokens: {calls} Token Info calls, {spent} answered 503");
    // At 1/s, the test's own duration may add one or two calls, never 50.
    assert!(calls <= 8, "{calls} Token Info calls");
    assert!(spent >= 42, "{spent} budget refusals");
}

#[tokio::test]
async fn a_zero_age_route_spends_the_budget_on_tokens_wix_never_vouched_for() {
    let h = harness_with(|b| {
        b.token_info_budget_for_new_tokens(crate::support::nz(1), crate::support::nz(3))
    })
    .await;
    let app = Router::new().route(
        "/fresh",
        get(whoami).route_layer(h.elevator.layer().max_identity_age(Duration::ZERO)),
    );
    let member = h.mint(SubjectType::Member);
    assert_eq!(status(&app, "/fresh", &member).await, 200);
    let invented = "OauthNG.JWS.invented";
    for _ in 0..100 {
        let asked = h.wix.token_info_calls_for(invented);
        let (code, body) = answer(&app, "/fresh", invented).await;
        // Wix was asked, and refused it; or the budget was spent, and Wix
        // was not asked.
        let expected = if h.wix.token_info_calls_for(invented) > asked {
            (401, "invalid_token")
        } else {
            (503, "upstream_unavailable")
        };
        assert_eq!((code, body["code"].as_str().unwrap_or_default()), expected);
    }
    let invented_calls = h.wix.token_info_calls_for(invented);
    println!(
        "100 requests with one invented token on a zero-age route: {invented_calls} Token Info calls"
    );
    assert!(invented_calls <= 3, "{invented_calls}");
    // The vouched-for member is exempt: each request re-asks Wix.
    for _ in 0..5 {
        assert_eq!(status(&app, "/fresh", &member).await, 200);
    }
    assert_eq!(h.wix.token_info_calls_for(&member), 6);
}

#[tokio::test]
async fn the_maximum_identity_age_is_a_ceiling_in_degraded_mode() {
    let h = harness_with(|b| {
        b.serve_stale_identities_for(Duration::from_secs(60))
            .token_info_ttl(Duration::from_millis(1))
    })
    .await;
    let app = Router::new()
        .route(
            "/payouts",
            get(whoami).route_layer(h.elevator.layer().max_identity_age(Duration::ZERO)),
        )
        .route("/whoami", get(whoami).route_layer(h.elevator.layer()));
    let member = h.mint(SubjectType::Member);
    assert_eq!(status(&app, "/payouts", &member).await, 200);
    // The TTL passes (the behaviour under test), then Wix fails.
    crate::support::skip(Duration::from_millis(10)).await;
    h.wix.fail(MockEndpoint::TokenInfo, Fault::Status(503));
    let (code, body) = answer(&app, "/payouts", &member).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (502, Some("upstream_failed"))
    );
    // A route without a maximum age is served the stale identity.
    assert_eq!(status(&app, "/whoami", &member).await, 200);
}

/// A route that lists items, declaring `memberId` bound to the caller;
/// the handler passes `?member=` through.
fn items_app(h: &Harness) -> Router {
    h.wix.on(
        "GET /items/v1/items",
        MockReply::json(200, json!({"items": []})),
    );
    Router::new().route(
        "/items",
        get(
            |api: WixApi, query: axum::extract::Query<Vec<(String, String)>>| async move {
                let mut request = api.get("/items/v1/items");
                for (key, value) in query.0 {
                    request = request.query(&key, value);
                }
                Ok::<_, WixApiError>(Json(request.await?.json::<Value>()?))
            },
        )
        .route_layer(
            h.elevator
                .layer()
                .allow("GET /items/v1/items?memberId={subjectId}&limit={n}"),
        ),
    )
}

#[tokio::test]
async fn caller_bound_query_values_are_the_callers_own() {
    let h = harness().await;
    let app = items_app(&h);
    let member = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).subject_id("m-1"));
    // Another member's id: refused before any traffic.
    let (code, body) = answer(&app, "/items?memberId=m-2", &member).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (403, Some("operation_not_declared"))
    );
    assert_eq!(h.wix.calls_to("GET /items/v1/items"), 0);
    // Not passed: the library sends the caller's own.
    assert_eq!(status(&app, "/items?limit=5", &member).await, 200);
    // Passed as the caller's own: sent once.
    assert_eq!(status(&app, "/items?memberId=m-1", &member).await, 200);
    let sent: Vec<Option<String>> = h
        .wix
        .requests_to("GET /items/v1/items")
        .into_iter()
        .map(|r| r.query)
        .collect();
    assert_eq!(
        sent,
        [
            Some("limit=5&memberId=m-1".to_owned()),
            Some("memberId=m-1".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_call_differing_from_its_declaration_in_one_literal_segment_is_refused() {
    let h = harness().await;
    h.wix.on(
        "GET /apps/v1/instances",
        MockReply::json(200, json!({"leak": true})),
    );
    let app = Router::new().route(
        "/instances",
        get(|api: WixApi| async move { api.get("/apps/v1/instances").await.map(|_| "called") })
            .route_layer(h.elevator.layer().allow("GET /apps/v1/instance")),
    );
    let member = h.mint(SubjectType::Member);
    let (code, body) = answer(&app, "/instances", &member).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (403, Some("operation_not_declared"))
    );
    assert_eq!(
        h.wix.calls_to("GET /apps/v1/instances"),
        0,
        "nothing reached Wix"
    );
}

#[tokio::test]
async fn the_raw_app_token_is_only_for_routes_that_opt_in() {
    let h = harness().await;
    let token_route = || get(|t: ElevatedToken| async move { t.instance_id().to_owned() });
    let app = Router::new()
        .route("/closed", token_route().route_layer(h.elevator.layer()))
        .route(
            "/open",
            token_route().route_layer(h.elevator.layer().expose_app_token()),
        );
    let member = h.mint(SubjectType::Member);
    let (code, body) = answer(&app, "/closed", &member).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (500, Some("app_token_not_exposed"))
    );
    assert_eq!(
        h.wix.calls(MockEndpoint::CreateAccessToken),
        0,
        "no app token was minted for it"
    );
    assert_eq!(status(&app, "/open", &member).await, 200);
}
