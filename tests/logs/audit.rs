//! The audit trail: one event per elevated Wix call and per denial, with
//! who, what and how it ended; never a token.

use axum::routing::get;
use wix_elevate::{SubjectType, SubjectTypes, test_util::CallerSpec};

use crate::{
    Captured,
    support::{Harness, call, harness, scoped_app as app},
};

#[tokio::test]
async fn audit_events_carry_who_did_what_and_no_token() {
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::INFO);

    let Harness { wix, elevator, .. } = harness().await;
    let app = app(&elevator).route(
        "/members-only",
        get(|| async { "ok" }).route_layer(
            elevator
                .layer()
                .policy(SubjectTypes::members())
                .route_name("members_only"),
        ),
    );
    let member = wix.mint(
        CallerSpec::new(SubjectType::Member)
            .subject_id("m-7")
            .instance("inst-7"),
    );
    let visitor = wix.mint(
        CallerSpec::new(SubjectType::Visitor)
            .subject_id("v-7")
            .instance("inst-7"),
    );
    assert_eq!(call(&app, "GET", "/instance", &member).await.0, 200);
    assert_eq!(call(&app, "POST", "/escalate", &member).await.0, 403);
    assert_eq!(call(&app, "GET", "/members-only", &visitor).await.0, 403);
    drop(_guard);
    let logs = captured.text();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("wix_elevate::audit"))
        .collect();

    let call_event = lines
        .iter()
        .find(|l| l.contains("elevated Wix call"))
        .expect(&logs);
    for field in [
        "route=\"instance\"",
        "policy=\"default\"",
        "subject_type=\"MEMBER\"",
        "subject_id=\"m-7\"",
        "instance_id=\"inst-7\"",
        "operation=GET /apps/v1/instance",
        "outcome=\"ok\"",
        "status=200",
        "latency_ms=",
    ] {
        assert!(
            call_event.contains(field),
            "{field} missing in {call_event}"
        );
    }
    let undeclared = lines
        .iter()
        .find(|l| l.contains("operation_not_declared"))
        .expect(&logs);
    assert!(
        undeclared.contains("operation=POST /members/v1/members"),
        "{undeclared}"
    );
    assert!(undeclared.contains("subject_id=\"m-7\""), "{undeclared}");
    let denied = lines
        .iter()
        .find(|l| l.contains("policy_denied"))
        .expect(&logs);
    assert!(
        denied.contains("route=\"members_only\"") && denied.contains("subject_type=\"VISITOR\""),
        "{denied}"
    );
    assert!(denied.contains("policy=\"members\""), "{denied}");
    for token in [&member, &visitor] {
        assert!(!logs.contains(token.as_str()));
    }
    assert!(!logs.contains("OauthNG"), "{logs}");
}

#[tokio::test]
async fn a_refused_path_with_a_line_break_cannot_forge_an_audit_line() {
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::INFO);
    let Harness { wix, elevator, .. } = harness().await;
    let app = app(&elevator);
    let member = wix.mint(CallerSpec::new(SubjectType::Member).subject_id("m-8"));
    // A route parameter carrying a newline and a fake audit event.
    let forged = "/any-member/x%0AINFO%20wix_elevate::audit:%20elevated%20Wix%20call%20route=%22admin%22%20outcome=%22ok%22";
    assert_eq!(call(&app, "GET", forged, &member).await.0, 403);
    drop(_guard);
    let logs = captured.text();
    let audit: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("wix_elevate::audit"))
        .collect();
    assert_eq!(audit.len(), 1, "one event, one line:\n{logs}");
    assert!(audit[0].contains("operation_not_declared"), "{}", audit[0]);
    assert!(
        audit[0].contains(r"x\nINFO"),
        "the newline is escaped: {}",
        audit[0]
    );
    assert!(
        !logs
            .lines()
            .any(|l| l.starts_with("INFO wix_elevate::audit")),
        "{logs}"
    );
}

#[tokio::test]
async fn line_separators_and_bidirectional_controls_are_escaped_in_audit_lines() {
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::INFO);
    let Harness { wix, elevator, .. } = harness().await;
    let app = app(&elevator);
    // Text from Wix (a subject id) carrying one of them too.
    let member = wix.mint(CallerSpec::new(SubjectType::Member).subject_id("m-9\u{2029}x"));
    let disguising = [
        '\u{2028}', '\u{2029}', '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}',
        '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
    ];
    for c in disguising {
        let mut encoded = String::new();
        for byte in c.to_string().bytes() {
            encoded.push_str(&format!("%{byte:02X}"));
        }
        let path = format!("/any-member/x{encoded}admin");
        assert_eq!(call(&app, "GET", &path, &member).await.0, 403);
    }
    drop(_guard);
    let logs = captured.text();
    let audit: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("wix_elevate::audit"))
        .collect();
    assert_eq!(audit.len(), disguising.len(), "one line each:\n{logs}");
    for (line, c) in audit.iter().zip(disguising) {
        let escaped = format!("x\\u{{{:x}}}admin", u32::from(c));
        assert!(
            line.contains(&escaped),
            "U+{:04X} not escaped: {line}",
            u32::from(c)
        );
        // A string field: escaped here, then quoted (and its backslash
        // escaped again) by the subscriber.
        assert!(line.contains(r#"subject_id="m-9\\u{2029}x""#), "{line}");
    }
    for c in disguising {
        assert!(!logs.contains(c), "U+{:04X} reached the log", u32::from(c));
    }
}

#[tokio::test]
async fn a_plan_refusal_is_audited_with_its_own_outcome() {
    use axum::{Router, routing::get};
    use wix_elevate::policy;
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::INFO);
    let Harness { wix, elevator, .. } = harness().await;
    let app = Router::new().route(
        "/premium",
        get(|| async { "ok" }).route_layer(
            elevator
                .layer()
                .route_name("premium")
                .policy(policy::plans(["premium"])),
        ),
    );
    let free = wix.mint(CallerSpec::new(SubjectType::User).subject_id("u-free"));
    let (status, body) = call(&app, "GET", "/premium", &free).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("plan_required"))
    );
    drop(_guard);
    let logs = captured.text();
    let denied = logs
        .lines()
        .find(|l| l.contains("wix_elevate::audit") && l.contains("denied"))
        .unwrap_or_else(|| panic!("no audit line:\n{logs}"));
    assert!(denied.contains("outcome=\"plan_required\""), "{denied}");
    assert!(denied.contains("policy=\"plans\""), "{denied}");
    assert!(denied.contains("subject_id=\"u-free\""), "{denied}");
}

#[tokio::test]
async fn a_call_outside_a_request_is_audited_under_its_actor() {
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::INFO);
    let Harness { wix, elevator, .. } = harness().await;
    let job = elevator
        .app_client("webhook:app_installed")
        .allow("GET /apps/v1/instance")
        .build()
        .unwrap();
    job.for_instance("inst-bg")
        .get("/apps/v1/instance")
        .await
        .unwrap();
    drop(_guard);
    let _ = wix;
    let logs = captured.text();
    let line = logs
        .lines()
        .find(|l| l.contains("elevated Wix call"))
        .unwrap_or_else(|| panic!("no audit line:\n{logs}"));
    for field in [
        r#"route="webhook:app_installed""#,
        r#"subject_type="APP""#,
        r#"subject_id="webhook:app_installed""#,
        r#"instance_id="inst-bg""#,
        "operation=GET /apps/v1/instance",
        r#"outcome="ok""#,
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
}
