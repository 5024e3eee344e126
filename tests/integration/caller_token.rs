//! Rule 1: the caller token is read before any network call.

use wix_elevate::{SubjectType, test_util::MockEndpoint};

use crate::support::harness;

#[tokio::test]
async fn raw_and_bearer_tokens_both_work_and_wix_sees_the_bare_token() {
    let h = harness().await;
    let token = h.mint(SubjectType::Visitor);
    for value in [
        token.clone(),
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER   {token}"),
    ] {
        let answer = h.get("/whoami", Some(&value)).await;
        assert_eq!(answer.status, 200, "{value:.20}: {answer:?}");
        assert_eq!(answer.json()["subjectType"], "VISITOR");
    }
    // Token Info was asked about the bare token, never with its scheme.
    assert_eq!(h.wix.token_info_calls_for(&token), 1);
    assert_eq!(h.wix.calls(MockEndpoint::TokenInfo), 1);
}

#[tokio::test]
async fn malformed_headers_are_refused_without_calling_wix() {
    let h = harness().await;
    let long = "a".repeat(8 * 1024 + 1);
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing_token"),
        (Some(String::new()), "missing_token"),
        (Some("   ".into()), "missing_token"),
        (Some("Bearer".into()), "malformed_token"),
        (Some("Bearer ".into()), "malformed_token"),
        (Some("Basic dXNlcjpwYXNz".into()), "malformed_token"),
        (Some("Bearer Bearer abc".into()), "malformed_token"),
        (Some("Token abc".into()), "malformed_token"),
        (Some("abc\tdef".into()), "malformed_token"),
        (Some("abc\"def".into()), "malformed_token"),
        (Some(long), "malformed_token"),
    ];
    for (value, code) in cases {
        let answer = h.get("/whoami", value.as_deref()).await;
        answer.assert_problem(401, code);
        let challenge = answer.header("www-authenticate");
        if code == "missing_token" {
            assert_eq!(challenge, Some("Bearer"), "{value:?}");
        } else {
            assert_eq!(
                challenge,
                Some(r#"Bearer error="invalid_token""#),
                "{value:?}"
            );
        }
    }
    assert_eq!(h.wix.calls(MockEndpoint::TokenInfo), 0);
    assert_eq!(h.wix.calls(MockEndpoint::CreateAccessToken), 0);
    assert_eq!(h.handler_calls(), 0);
}

#[tokio::test]
async fn non_ascii_and_control_bytes_are_refused_without_calling_wix() {
    let h = harness().await;
    // HTTP lets obs-text (0x80-0xFF) and tabs through in header values;
    // reqwest will not send them, so go through the service directly.
    use axum::body::Body;
    use tower::ServiceExt;
    for raw in [&b"tok\xc3\xa9n"[..], b"tok\ten", b"Bearer t\xffk"] {
        let value = http::HeaderValue::from_bytes(raw).expect("a legal header value");
        let req = http::Request::get("/whoami")
            .header("authorization", value)
            .body(Body::empty())
            .unwrap();
        let res = h.app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 401, "{raw:?}");
    }
    let mut two = http::Request::get("/whoami").body(Body::empty()).unwrap();
    let token = h.mint(SubjectType::Visitor);
    two.headers_mut()
        .append("authorization", token.parse().unwrap());
    two.headers_mut()
        .append("authorization", token.parse().unwrap());
    assert_eq!(h.app.clone().oneshot(two).await.unwrap().status(), 401);
    assert_eq!(h.wix.calls(MockEndpoint::TokenInfo), 0);
    assert_eq!(h.handler_calls(), 0);
}

#[tokio::test]
async fn the_length_cap_is_configurable() {
    let h = crate::support::harness_with(|b| b.max_token_len(100)).await;
    let short = h
        .wix
        .mint(wix_elevate::test_util::CallerSpec::new(SubjectType::Visitor).token_len(100));
    let long = h
        .wix
        .mint(wix_elevate::test_util::CallerSpec::new(SubjectType::Visitor).token_len(101));
    assert_eq!(h.get("/whoami", Some(&short)).await.status, 200);
    h.get("/whoami", Some(&long))
        .await
        .assert_problem(401, "malformed_token");
    assert_eq!(h.wix.token_info_calls_for(&long), 0);
}
