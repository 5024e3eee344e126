//! Wix fidelity: every answer form Wix's own SDK accepts is decided on,
//! never turned into an outage; and only Wix's verdicts on a token are
//! remembered as refusals.

use std::time::Duration;
use tokio::time::Instant;

use axum::{Router, routing::get};
use tokio::net::TcpListener;
use wix_elevate::{
    ElevatedToken, Elevator, SubjectType,
    test_util::{CallerSpec, Fault, GrantQuirk, MockEndpoint, TokenInfoQuirk, TokenInfoStyle},
};

use crate::support::{harness, harness_with};

#[tokio::test]
async fn every_token_info_style_and_quirk_the_sdk_accepts_is_a_200() {
    let quirks = [
        TokenInfoQuirk::IatIsoDate,
        TokenInfoQuirk::IatObject,
        TokenInfoQuirk::SubjectTypeEscaped,
        TokenInfoQuirk::ActiveUppercase,
        TokenInfoQuirk::ExpDecimalString,
        TokenInfoQuirk::ExpDecimalNumber,
        TokenInfoQuirk::Bom,
    ];
    for style in [
        TokenInfoStyle::Proto3,
        TokenInfoStyle::Strings,
        TokenInfoStyle::Native,
    ] {
        for quirk in quirks {
            let h = harness().await;
            h.wix.set_token_info_style(style);
            h.wix.set_token_info_quirks(&[quirk]);
            let token = h
                .wix
                .mint(CallerSpec::new(SubjectType::Member).subject_id("m-1"));
            let answer = h.get("/members", Some(&token)).await;
            assert_eq!(answer.status, 200, "{style:?} {quirk:?}: {answer:?}");
            assert_eq!(
                answer.json()["subjectType"],
                "MEMBER",
                "{style:?} {quirk:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_subject_type_that_is_not_a_string_is_unknown_a_policy_decision() {
    let h = harness().await;
    h.wix
        .set_token_info_quirks(&[TokenInfoQuirk::SubjectTypeNumber]);
    let token = h.mint(SubjectType::Member);
    // The default policy does not admit UNKNOWN: 403, not 502.
    h.get("/whoami", Some(&token))
        .await
        .assert_problem(403, "forbidden");
    let answer = h.get("/unknown", Some(&token)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["subjectType"], "UNKNOWN");
}

#[tokio::test]
async fn an_inactive_answer_with_defaults_omitted_is_a_refusal() {
    let h = harness().await;
    // proto3 drops `"active": false`: the answer says nothing is active.
    let token = h.wix.mint(CallerSpec::new(SubjectType::Member).inactive());
    h.get("/whoami", Some(&token))
        .await
        .assert_problem(401, "invalid_token");
}

#[tokio::test]
async fn a_caller_without_a_subject_id_is_refused() {
    for style in [TokenInfoStyle::Proto3, TokenInfoStyle::Strings] {
        let h = harness().await;
        h.wix.set_token_info_style(style);
        // Proto3 omits the empty id; the doc style sends `""`.
        let token = h
            .wix
            .mint(CallerSpec::new(SubjectType::Visitor).subject_id(""));
        h.get("/whoami", Some(&token))
            .await
            .assert_problem(401, "no_subject");
        assert_eq!(h.handler_calls(), 0);
        assert_eq!(h.wix.calls(MockEndpoint::CreateAccessToken), 0);
    }
}

#[tokio::test]
async fn only_400_401_403_and_404_from_token_info_are_refusals() {
    for status in [400, 401, 403, 404] {
        let h = harness().await;
        let token = h.mint(SubjectType::Member);
        h.wix.fail(MockEndpoint::TokenInfo, Fault::Status(status));
        h.get("/whoami", Some(&token))
            .await
            .assert_problem(401, "invalid_token");
        h.wix.clear_faults();
        // Remembered for the refused-token TTL: Wix is not asked again.
        h.get("/whoami", Some(&token))
            .await
            .assert_problem(401, "invalid_token");
        assert_eq!(h.wix.token_info_calls_for(&token), 1, "{status}");
    }
}

#[tokio::test]
async fn other_4xx_from_token_info_are_failures_never_remembered() {
    for status in [402, 405, 409, 410, 418, 422] {
        let h = harness().await;
        let token = h.mint(SubjectType::Member);
        h.wix.fail(MockEndpoint::TokenInfo, Fault::Status(status));
        h.get("/whoami", Some(&token))
            .await
            .assert_problem(502, "upstream_failed");
        h.wix.clear_faults();
        let answer = h.get("/whoami", Some(&token)).await;
        assert_eq!(answer.status, 200, "{status}: not remembered: {answer:?}");
    }
}

#[tokio::test]
async fn token_info_408_and_425_are_retried() {
    for status in [408, 425] {
        let h = harness().await;
        let token = h.mint(SubjectType::Member);
        h.wix
            .fail_times(MockEndpoint::TokenInfo, Fault::Status(status), 1);
        let answer = h.get("/whoami", Some(&token)).await;
        assert_eq!(answer.status, 200, "{status}: {answer:?}");
        assert_eq!(h.wix.token_info_calls_for(&token), 2, "{status}");
    }
}

#[tokio::test]
async fn a_408_for_a_valid_token_is_not_remembered_as_a_refusal() {
    let h = harness_with(|b| b.auth_deadline(Duration::from_millis(300))).await;
    let token = h.mint(SubjectType::Member);
    h.wix.fail(MockEndpoint::TokenInfo, Fault::Status(408));
    let answer = h.get("/whoami", Some(&token)).await;
    assert!(
        answer.status == 502 || answer.status == 504,
        "a failure, not a refusal: {answer:?}"
    );
    h.wix.clear_faults();
    assert_eq!(h.get("/whoami", Some(&token)).await.status, 200);
}

/// A route that shows the app token's remaining lifetime, in seconds.
async fn lifetime_app(elevator: &Elevator) -> String {
    let app = Router::new().route(
        "/lifetime",
        get(|token: ElevatedToken| async move {
            token
                .expires_at()
                .saturating_duration_since(Instant::now())
                .as_secs()
                .to_string()
        })
        .route_layer(elevator.layer().expose_app_token()),
    );
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let url = format!("http://{}/lifetime", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn unusable_expires_in_forms_fall_back_to_a_conservative_lifetime() {
    for (quirk, max_secs) in [
        (GrantQuirk::NoExpiresIn, 90),
        (GrantQuirk::ZeroExpiresIn, 90),
        (GrantQuirk::DurationString, 90),
        // Clamped to 24 hours, and no overflow anywhere.
        (GrantQuirk::Huge, 24 * 3600),
    ] {
        let wix = crate::support::mock_wix().await;
        wix.set_grant_quirk(Some(quirk));
        let elevator = wix
            .elevator_builder()
            .app_token_lifetimes(
                wix_elevate::AppTokenLifetimes::default().fallback(Duration::from_secs(90)),
            )
            .build()
            .unwrap();
        let url = lifetime_app(&elevator).await;
        let token = wix.mint(CallerSpec::new(SubjectType::Member));
        let res = reqwest::Client::new()
            .get(&url)
            .header("authorization", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{quirk:?}");
        let secs: u64 = res.text().await.unwrap().parse().unwrap();
        assert!(
            secs <= max_secs && secs + 5 >= max_secs,
            "{quirk:?}: {secs}"
        );
        assert_eq!(wix.calls(MockEndpoint::CreateAccessToken), 1, "{quirk:?}");
    }
}
