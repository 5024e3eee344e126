//! Declared operations, caller binding, the audit trail and metrics.

use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, MockEndpoint},
};

use crate::support::{Harness, call, harness, scoped_app as app};

#[tokio::test]
async fn a_declared_call_goes_through_with_the_elevated_token() {
    let Harness { wix, elevator, .. } = harness().await;
    let app = app(&elevator);
    let token = wix.mint(CallerSpec::new(SubjectType::Visitor).instance("inst-lp"));
    let (status, body) = call(&app, "GET", "/instance", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance"]["instanceId"], "inst-lp");
    assert_eq!(wix.calls(MockEndpoint::GetAppInstance), 1);
}

#[tokio::test]
async fn an_undeclared_call_is_refused_before_any_traffic() {
    let Harness { wix, elevator, .. } = harness().await;
    let app = app(&elevator);
    let token = wix.mint(CallerSpec::new(SubjectType::Member));
    let (status, body) = call(&app, "POST", "/escalate", &token).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "operation_not_declared");
    let (status, body) = call(&app, "GET", "/nothing-declared", &token).await;
    assert_eq!(
        status, 403,
        "a route that declares nothing may call nothing: {body}"
    );
    assert_eq!(wix.calls(MockEndpoint::Other), 0);
    assert_eq!(wix.calls(MockEndpoint::GetAppInstance), 0);
}

#[tokio::test]
async fn path_tricks_cannot_reach_an_undeclared_api() {
    let Harness { wix, elevator, .. } = harness().await;
    let app = app(&elevator);
    let token = wix.mint(CallerSpec::new(SubjectType::Member));
    assert_eq!(call(&app, "GET", "/any-member/m-9", &token).await.0, 200);
    for trick in [
        "/any-member/..%2F..%2Fapps%2Fv1%2Finstance",
        "/any-member/m-9/../../../apps/v1/instance",
        "/any-member/a%2Fb",
    ] {
        let (status, body) = call(&app, "GET", trick, &token).await;
        assert_eq!(status, 403, "{trick}: {body}");
    }
    assert_eq!(wix.calls(MockEndpoint::GetMember), 1);
    assert_eq!(wix.calls(MockEndpoint::GetAppInstance), 0);
    assert_eq!(wix.calls(MockEndpoint::Other), 0);
}

#[tokio::test]
async fn a_template_bound_to_the_caller_refuses_another_members_id() {
    let Harness { wix, elevator, .. } = harness().await;
    let app = app(&elevator);
    let token = wix.mint(CallerSpec::new(SubjectType::Member).subject_id("m-1"));
    let (status, body) = call(&app, "GET", "/members/m-1", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["member"]["id"], "m-1");
    let (status, body) = call(&app, "GET", "/members/m-2", &token).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        wix.calls(MockEndpoint::GetMember),
        1,
        "the refused read never reached Wix"
    );
}

#[tokio::test]
async fn a_route_parameter_can_be_required_to_match_the_caller() {
    let Harness { wix, elevator, .. } = harness().await;
    let app = app(&elevator);
    let token = wix.mint(CallerSpec::new(SubjectType::Member).subject_id("m-1"));
    assert_eq!(call(&app, "GET", "/profiles/m-1", &token).await.0, 200);
    let (status, body) = call(&app, "GET", "/profiles/m-2", &token).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "forbidden");
}

#[tokio::test]
async fn metrics_move_with_requests_cache_and_wix_calls() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let wix = crate::support::mock_wix().await;
    // Handles bind to the recorder in force when the elevator and layers are built.
    let (elevator, app) = metrics::with_local_recorder(&recorder, || {
        let elevator = wix.elevator_builder().build().unwrap();
        let app = app(&elevator);
        (elevator, app)
    });
    let token = wix.mint(CallerSpec::new(SubjectType::Member));
    for _ in 0..3 {
        assert_eq!(call(&app, "GET", "/instance", &token).await.0, 200);
    }
    assert_eq!(
        call(&app, "GET", "/instance", "OauthNG.JWS.unknown")
            .await
            .0,
        401
    );
    drop(elevator);
    let text = handle.render();
    for expected in [
        r#"wix_elevate_requests_total{route="instance",outcome="granted"} 3"#,
        r#"wix_elevate_requests_total{route="instance",outcome="invalid_token",status="401"} 1"#,
        r#"wix_elevate_cache_total{cache="identity",result="hit"} 2"#,
        r#"wix_elevate_cache_total{cache="identity",result="miss"} 2"#,
        r#"wix_elevate_cache_total{cache="app_token",result="miss"} 1"#,
        r#"wix_elevate_wix_calls_total{endpoint="token_info",outcome="ok"} 1"#,
        r#"wix_elevate_wix_calls_total{endpoint="token_info",outcome="client_error"} 1"#,
        r#"wix_elevate_wix_calls_total{endpoint="create_access_token",outcome="ok"} 1"#,
        r#"wix_elevate_wix_calls_total{endpoint="api",outcome="ok"} 3"#,
        "wix_elevate_wix_call_duration_seconds",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in\n{text}");
    }
    // Named routes register their series once, under their name only.
    assert!(
        !text.contains("route=\"\""),
        "series for an empty route name:\n{text}"
    );
}

/// New-user friction: an argument that names no placeholder (names are
/// case-sensitive) is refused before any traffic, and the error (so the
/// log line) names the placeholder and the argument; the body stays generic.
#[tokio::test]
async fn a_misnamed_argument_names_the_placeholder_and_the_argument() {
    use wix_elevate::WixApiErrorKind;
    let h = crate::support::harness().await;
    let api = h
        .elevator
        .app_client("misnamed")
        .allow("GET /members/v1/members/{id}")
        .build()
        .unwrap()
        .for_instance("inst-misnamed");
    let error = api
        .get("/members/v1/members/{id}")
        .arg("ID", "m-1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), WixApiErrorKind::InvalidRequest);
    let said = error.to_string();
    assert!(said.contains("`{id}`") && said.contains("ID"), "{said}");
    assert_eq!(h.wix.calls_to("GET /members/v1/members/{id}"), 0);
    let error = api
        .get("/members/v1/members/{id}")
        .arg("id", "m-1")
        .arg("extra", "x")
        .send()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("extra"), "{error}");
    // The response body is the fixed one.
    let response = axum::response::IntoResponse::into_response(error);
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(!body.contains("extra") && !body.contains("{id}"), "{body}");
}

#[test]
fn a_lowercase_method_is_refused_with_a_message_that_says_capitals() {
    let error = "get /apps/v1/instance"
        .parse::<wix_elevate::Operation>()
        .unwrap_err();
    assert!(error.to_string().contains("capitals"), "{error}");
}

/// A route's declarations are checked once: `check` reports the first
/// that does not parse, and applying such a layer fails at start-up, naming
/// it, instead of serving a route whose declarations nobody could read.
#[test]
fn a_declaration_that_does_not_parse_is_reported_by_check_and_stops_the_layer() {
    let elevator = wix_elevate::Elevator::builder("app", "secret")
        .build()
        .unwrap();
    let layer = elevator
        .layer()
        .allow("GET /apps/v1/instance")
        .allow("get /members")
        .allow_idempotent("POST stores");
    let error = layer.check().unwrap_err();
    assert!(
        matches!(&error, wix_elevate::ConfigError::InvalidOperation(op) if op == "get /members"),
        "{error:?}"
    );
    assert!(
        elevator
            .layer()
            .allow("GET /apps/v1/instance")
            .check()
            .is_ok()
    );
    assert!(
        elevator
            .app_client("job")
            .allow("GET apps")
            .build()
            .is_err()
    );
    // Applied when the router is finalized (as `axum::serve` does).
    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let router: axum::Router = axum::Router::new().route(
            "/",
            axum::routing::get(|| async { "x" }).route_layer(layer.clone()),
        );
        let _ = router.with_state::<()>(());
    }));
    let message = applied.expect_err("applying it panics");
    let message = message
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(message.contains("get /members"), "{message}");
}
