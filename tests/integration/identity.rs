//! Rules 2 and 5: who is calling, checked against Token Info, cached by
//! token digest, coalesced, refusals remembered briefly, failures never.

use std::time::Duration;

use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, MockEndpoint, RefusedTokenAnswer, TokenInfoStyle},
};

use crate::support::{harness, harness_with};

#[tokio::test]
async fn both_json_styles_of_token_info_are_accepted() {
    for style in [TokenInfoStyle::Strings, TokenInfoStyle::Native] {
        let h = harness().await;
        h.wix.set_token_info_style(style);
        let token = h.wix.mint(
            CallerSpec::new(SubjectType::Member)
                .subject_id("m-7")
                .instance("inst-7")
                .site_id("site-7"),
        );
        let answer = h.get("/whoami", Some(&token)).await;
        assert_eq!(answer.status, 200, "{style:?}: {answer:?}");
        let body = answer.json();
        assert_eq!(body["subjectType"], "MEMBER");
        assert_eq!(body["subjectId"], "m-7");
        assert_eq!(body["instanceId"], "inst-7");
        assert_eq!(body["siteId"], "site-7");
    }
}

#[tokio::test]
async fn tokens_failing_a_check_are_401_and_never_reach_the_handler() {
    let h = harness().await;
    let cases = [
        (
            CallerSpec::new(SubjectType::Visitor).inactive(),
            "invalid_token",
        ),
        (
            CallerSpec::new(SubjectType::Visitor).expired(),
            "expired_token",
        ),
        (
            CallerSpec::new(SubjectType::Visitor).client_id("another-app"),
            "foreign_token",
        ),
        (
            CallerSpec::new(SubjectType::Visitor).no_client_id(),
            "foreign_token",
        ),
        (
            CallerSpec::new(SubjectType::Visitor).no_instance(),
            "no_instance",
        ),
    ];
    for (spec, code) in cases {
        let token = h.wix.mint(spec);
        let answer = h.get("/whoami", Some(&token)).await;
        answer.assert_problem(401, code);
        assert_eq!(
            answer.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#)
        );
    }
    assert_eq!(h.handler_calls(), 0);
    assert_eq!(h.wix.calls(MockEndpoint::CreateAccessToken), 0);
}

#[tokio::test]
async fn tokens_wix_refuses_are_401_whatever_form_the_refusal_takes() {
    for answer_form in [
        RefusedTokenAnswer::Status(400),
        RefusedTokenAnswer::Status(401),
        RefusedTokenAnswer::Status(403),
        RefusedTokenAnswer::Status(404),
        RefusedTokenAnswer::Inactive,
    ] {
        let h = harness().await;
        h.wix.set_refused_token_answer(answer_form);
        h.get("/whoami", Some("OauthNG.JWS.never-minted"))
            .await
            .assert_problem(401, "invalid_token");
        let revoked = h.mint(SubjectType::Member);
        h.wix.revoke(&revoked);
        h.get("/whoami", Some(&revoked))
            .await
            .assert_problem(401, "invalid_token");
        assert_eq!(h.handler_calls(), 0, "{answer_form:?}");
    }
}

#[tokio::test]
async fn unknown_subject_types_parse_and_are_denied_by_default() {
    let h = harness().await;
    let robot = h.wix.mint(CallerSpec::with_subject_type_str("ROBOT"));
    h.get("/whoami", Some(&robot))
        .await
        .assert_problem(403, "forbidden");
    let answer = h.get("/unknown", Some(&robot)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["subjectType"], "UNKNOWN");
}

#[tokio::test]
async fn a_known_token_is_verified_once_then_served_from_the_cache() {
    let h = harness().await;
    let token = h.mint(SubjectType::Member);
    for _ in 0..20 {
        assert_eq!(h.get("/whoami", Some(&token)).await.status, 200);
    }
    assert_eq!(h.wix.token_info_calls_for(&token), 1);
    assert_eq!(h.wix.calls(MockEndpoint::CreateAccessToken), 1);
    assert_eq!(h.handler_calls(), 20);
}

#[tokio::test]
async fn the_identity_cache_expires_after_its_ttl() {
    let h = harness_with(|b| b.token_info_ttl(Duration::from_millis(300))).await;
    let token = h.mint(SubjectType::Member);
    assert_eq!(h.get("/whoami", Some(&token)).await.status, 200);
    assert_eq!(h.wix.token_info_calls_for(&token), 1);
    // Waiting out a TTL is the behaviour under test, not synchronisation.
    crate::support::skip(Duration::from_millis(600)).await;
    assert_eq!(h.get("/whoami", Some(&token)).await.status, 200);
    assert_eq!(h.wix.token_info_calls_for(&token), 2);
}

#[tokio::test]
async fn a_cached_identity_is_never_served_past_its_exp() {
    let h = harness().await;
    // exp is in whole seconds: valid now, expired within two seconds.
    let token = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).expires_in(Duration::from_secs(1)));
    assert_eq!(h.get("/whoami", Some(&token)).await.status, 200);
    // Not skipped on the tokio clock: `exp` is Unix time, and the mock
    // (like Wix) judges it by the wall clock, so only real time expires it
    // there too.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    h.get("/whoami", Some(&token))
        .await
        .assert_problem(401, "expired_token");
    assert_eq!(h.handler_calls(), 1);
}

#[tokio::test]
async fn refused_tokens_are_remembered_briefly() {
    let h = harness_with(|b| b.refused_token_ttl(Duration::from_secs(60))).await;
    for _ in 0..5 {
        h.get("/whoami", Some("OauthNG.JWS.bad"))
            .await
            .assert_problem(401, "invalid_token");
    }
    assert_eq!(h.wix.token_info_calls_for("OauthNG.JWS.bad"), 1);

    let h = harness_with(|b| b.refused_token_ttl(Duration::ZERO)).await;
    for _ in 0..3 {
        h.get("/whoami", Some("OauthNG.JWS.bad"))
            .await
            .assert_problem(401, "invalid_token");
    }
    assert_eq!(h.wix.token_info_calls_for("OauthNG.JWS.bad"), 3);
}

#[tokio::test]
async fn the_instance_comes_from_token_info_only() {
    let h = harness().await;
    let token = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("real-instance"));
    let answer = h
        .get("/whoami?instanceId=evil&instance_id=evil", Some(&token))
        .await;
    assert_eq!(answer.json()["instanceId"], "real-instance");
    use tower::ServiceExt;
    let req = http::Request::get("/whoami?instanceId=evil")
        .header("authorization", &token)
        .header("x-wix-instance-id", "evil")
        .header("x-wix-instance", "evil")
        .body(axum::body::Body::from(r#"{"instanceId":"evil"}"#))
        .unwrap();
    let res = h.app.clone().oneshot(req).await.unwrap();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["instanceId"], "real-instance");
    assert_eq!(h.wix.access_token_calls_for("evil"), 0);
    assert_eq!(h.wix.access_token_calls_for("real-instance"), 1);
}
