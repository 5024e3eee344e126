//! What an operator sees when Wix fails: one WARN line naming the endpoint
//! and the underlying cause, never a token.

use std::time::Duration;

use crate::{Captured, support::harness_with};

/// The rejection line a Wix failure writes.
fn rejection_line(logs: &str) -> &str {
    logs.lines()
        .find(|l| l.contains("request rejected: Wix failed"))
        .unwrap_or_else(|| panic!("no rejection line in:\n{logs}"))
}

#[tokio::test]
async fn a_rejection_because_wix_failed_logs_its_cause_at_warn() {
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::WARN);
    // Nothing listens here: every Token Info call is refused by the OS.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let h = harness_with(|b| {
        b.base_url(format!("http://{closed}"))
            .auth_deadline(Duration::from_secs(5))
    })
    .await;
    let token = "OauthNG.JWS.secret-caller-token";
    h.get("/whoami", Some(token))
        .await
        .assert_problem(502, "upstream_failed");
    drop(_guard);
    let logs = captured.text();
    let line = rejection_line(&logs);
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("endpoint=\"token_info\""), "{line}");
    assert!(
        line.contains("Connection refused"),
        "the underlying cause: {line}"
    );
    assert!(!logs.contains(token), "{logs}");
}

#[tokio::test]
async fn a_wix_status_and_request_id_reach_the_rejection_line() {
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::WARN);
    let h = harness_with(|b| b).await;
    h.wix.fail(
        wix_elevate::test_util::MockEndpoint::TokenInfo,
        wix_elevate::test_util::Fault::Status(500),
    );
    let token = h.mint(wix_elevate::SubjectType::Member);
    h.get("/whoami", Some(&token))
        .await
        .assert_problem(502, "upstream_failed");
    drop(_guard);
    let logs = captured.text();
    let line = rejection_line(&logs);
    assert!(line.contains("wix_status=500"), "{line}");
    assert!(
        line.contains("wix_request_id=\"mock-request-id\""),
        "{line}"
    );
    assert!(!logs.contains(&token));
}

#[tokio::test]
async fn a_flood_of_invented_tokens_writes_a_few_lines_not_one_per_request() {
    use tower::ServiceExt;
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::WARN);
    let h = harness_with(|b| {
        b.token_info_budget_for_new_tokens(crate::support::nz(1), crate::support::nz(5))
    })
    .await;
    let flood = 100_000;
    let mut unavailable = 0;
    for i in 0..flood {
        let req = http::Request::get("/whoami")
            .header("authorization", format!("OauthNG.JWS.invented-{i}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let status = h.app.clone().oneshot(req).await.unwrap().status();
        if status == 503 {
            unavailable += 1;
        }
    }
    drop(_guard);
    let logs = captured.text();
    let lines = logs.lines().filter(|l| l.contains("WARN")).count();
    println!(
        "{flood} invented tokens: {unavailable} answered 503, {lines} WARN lines, {} Token Info calls",
        h.wix.calls(wix_elevate::test_util::MockEndpoint::TokenInfo)
    );
    assert!(unavailable >= flood - 100, "{unavailable}");
    assert!((1..=30).contains(&lines), "{lines} lines:\n{logs}");
    assert!(logs.contains("code=\"upstream_unavailable\""), "{logs}");
}
