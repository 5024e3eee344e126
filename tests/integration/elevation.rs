//! Rule 4: one app token per instance, cached, renewed before expiry off
//! the hot path, never handed out expired.

use std::time::Duration;

use tower::ServiceExt;
use wix_elevate::{
    ElevatedToken, SubjectType,
    test_util::{CallerSpec, MockEndpoint},
};

use crate::support::{harness, harness_with};

async fn elevated_token(h: &crate::support::Harness, caller: &str) -> ElevatedToken {
    use axum::{Router, routing::get};
    let app = Router::new().route(
        "/t",
        get(|t: ElevatedToken| async move { t.expose_secret().to_owned() })
            .route_layer(h.elevator.layer().expose_app_token()),
    );
    let req = http::Request::get("/t")
        .header("authorization", caller)
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    ElevatedToken::new(
        String::from_utf8(body.to_vec()).unwrap(),
        "",
        Duration::from_secs(1),
    )
}

#[tokio::test]
async fn the_elevated_token_works_against_wix_and_is_never_returned() {
    let h = harness().await;
    let token = h
        .wix
        .mint(CallerSpec::new(SubjectType::Visitor).instance("inst-a"));
    let answer = h.get("/instance", Some(&token)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["instance"]["instanceId"], "inst-a");
    // The caller's own token is refused by the app-only Wix API.
    let direct = reqwest::Client::new()
        .get(format!("{}/apps/v1/instance", h.wix.base_url()))
        .header("authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 403);
    // The whoami body carries identities only, never a token.
    let whoami = h.get("/whoami", Some(&token)).await;
    assert!(!whoami.body.contains("OauthNG"), "{}", whoami.body);
    assert!(!whoami.body.contains(&token));
}

#[tokio::test]
async fn one_app_token_per_instance_across_callers() {
    let h = harness().await;
    for i in 0..10 {
        let token = h
            .wix
            .mint(CallerSpec::new(SubjectType::Visitor).instance("shared"));
        assert_eq!(
            h.get("/whoami", Some(&token)).await.status,
            200,
            "caller {i}"
        );
    }
    let other = h
        .wix
        .mint(CallerSpec::new(SubjectType::Visitor).instance("other"));
    assert_eq!(h.get("/whoami", Some(&other)).await.status, 200);
    assert_eq!(h.wix.access_token_calls_for("shared"), 1);
    assert_eq!(h.wix.access_token_calls_for("other"), 1);
    assert_eq!(h.wix.calls(MockEndpoint::TokenInfo), 11);
}

#[tokio::test]
async fn an_app_token_due_for_renewal_is_renewed_in_the_background() {
    // Lifetime 4 s: renewal window opens after 2 s, hard margin 0.4 s.
    let h = harness().await;
    h.wix
        .set_app_token_lifetime("renew", Duration::from_secs(4));
    let caller = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("renew"));
    let first = elevated_token(&h, &caller).await;
    assert_eq!(h.wix.access_token_calls_for("renew"), 1);

    crate::support::skip(Duration::from_millis(2200)).await;
    // Wix is now stuck: a request in the renewal window must not wait.
    h.wix.hold(MockEndpoint::CreateAccessToken);
    let during = tokio::time::timeout(Duration::from_secs(2), elevated_token(&h, &caller))
        .await
        .expect("the request did not wait on the renewal");
    assert_eq!(during.expose_secret(), first.expose_secret());
    h.wix
        .wait_for_calls(MockEndpoint::CreateAccessToken, 2)
        .await;
    // A second request in the window starts no second renewal.
    let again = elevated_token(&h, &caller).await;
    assert_eq!(again.expose_secret(), first.expose_secret());
    assert_eq!(h.wix.calls(MockEndpoint::CreateAccessToken), 2);
    h.wix.release(MockEndpoint::CreateAccessToken);

    // Once renewed, requests get the new token.
    // Poll the condition (the background task finishing), with a deadline.
    let started = std::time::Instant::now();
    let mut renewed = elevated_token(&h, &caller).await;
    while renewed.expose_secret() == first.expose_secret() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "renewal never landed"
        );
        tokio::task::yield_now().await;
        renewed = elevated_token(&h, &caller).await;
    }
    assert_eq!(h.wix.access_token_calls_for("renew"), 2);
}

#[tokio::test]
async fn an_expired_app_token_is_never_handed_out() {
    let h = harness_with(|b| {
        b.app_token_lifetimes(
            wix_elevate::AppTokenLifetimes::default().renew_before(Duration::ZERO),
        )
    })
    .await;
    h.wix
        .set_app_token_lifetime("short", Duration::from_secs(1));
    let caller = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("short"));
    let first = elevated_token(&h, &caller).await;
    crate::support::skip(Duration::from_millis(1100)).await;
    let second = elevated_token(&h, &caller).await;
    assert_ne!(second.expose_secret(), first.expose_secret());
    assert_eq!(h.wix.access_token_calls_for("short"), 2);
    // ...and the one handed out is accepted by Wix.
    let answer = h.get("/instance", Some(&caller)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}
