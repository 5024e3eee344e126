//! Wix calls outside a request (a webhook handler, a job): declared
//! operations only, the same app-token cache and recovery as requests.

use wix_elevate::{
    SubjectType, WixApiErrorKind,
    test_util::{CallerSpec, MockEndpoint},
};

use crate::support::harness;

#[tokio::test]
async fn a_job_calls_what_it_declares_with_the_instances_shared_app_token() {
    let h = harness().await;
    // A request first: the instance's app token is minted and cached.
    let member = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("inst-job"));
    assert_eq!(h.get("/instance", Some(&member)).await.status, 200);
    assert_eq!(h.wix.access_token_calls_for("inst-job"), 1);

    let job = h
        .elevator
        .app_client("nightly-sync")
        .allow("GET /apps/v1/instance")
        .build()
        .unwrap();
    let api = job.for_instance("inst-job");
    assert_eq!(api.caller().subject_type(), SubjectType::App);
    assert_eq!(api.caller().subject_id(), "nightly-sync");
    let instance: serde_json::Value = api.get("/apps/v1/instance").await.unwrap().json().unwrap();
    assert_eq!(instance["instance"]["instanceId"], "inst-job");
    assert_eq!(
        h.wix.access_token_calls_for("inst-job"),
        1,
        "the cached token"
    );

    // Undeclared: refused before any traffic.
    let before = h.wix.calls(MockEndpoint::Api);
    let refused = api.post("/members/v1/members").await.unwrap_err();
    assert_eq!(refused.kind(), WixApiErrorKind::Undeclared);
    assert_eq!(h.wix.calls(MockEndpoint::Api), before);

    // Wix revokes the app token: one new token, the call succeeds.
    h.wix.revoke_app_tokens("inst-job");
    assert!(api.get("/apps/v1/instance").await.is_ok());
    assert_eq!(h.wix.access_token_calls_for("inst-job"), 2);

    // A job for an instance nobody called yet mints its own token.
    let fresh = job.for_instance("inst-new");
    assert!(fresh.get("/apps/v1/instance").await.is_ok());
    assert_eq!(h.wix.access_token_calls_for("inst-new"), 1);
}

/// Serverless (AWS Lambda freezes the process between invocations): the app
/// token is renewed on read, never by a timer, and a request never waits on
/// a renewal that froze mid-call. The freezes are a paused clock moved on.
#[tokio::test]
async fn a_frozen_process_renews_on_read_and_never_waits_on_a_renewal_frozen_mid_call() {
    use std::time::Duration;

    use axum::{Router, body::Body, routing::get};
    use http::Request;
    use tower::ServiceExt;
    use wix_elevate::{ElevatedToken, test_util::Fault};

    let h = harness().await;
    let lifetime = Duration::from_secs(3600);
    h.wix.set_default_app_token_lifetime(lifetime);
    let app: Router = Router::new().route(
        "/token",
        get(|token: ElevatedToken| async move { token.expose_secret().to_owned() })
            .route_layer(h.elevator.layer().expose_app_token()),
    );
    let member = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("inst-frozen"));
    let token_of = async |app: &Router| {
        let req = Request::get("/token")
            .header("authorization", &member)
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    };
    let creates = || h.wix.calls(MockEndpoint::CreateAccessToken);
    let first = token_of(&app).await;
    assert_eq!(creates(), 1);

    // Frozen between invocations until past the renewal point (5 minutes
    // before expiry): nothing renews behind the requests' back.
    tokio::time::pause();
    tokio::time::advance(lifetime - Duration::from_secs(4 * 60)).await;
    tokio::time::resume();
    assert_eq!(creates(), 1, "no timer renewed the token while frozen");

    // Thawed: the first read is answered at once with the current token
    // and starts the renewal, which Wix leaves hanging.
    h.wix
        .fail_times(MockEndpoint::CreateAccessToken, Fault::Hang, 1);
    assert_eq!(token_of(&app).await, first, "served while it renews");
    let started = std::time::Instant::now();
    while creates() < 2 {
        assert!(started.elapsed() < Duration::from_secs(5), "no renewal");
        tokio::task::yield_now().await;
    }

    // Frozen again with that renewal mid-call, this time past the token's
    // expiry: the next request neither serves the expired token nor waits
    // on the frozen renewal; it fetches its own.
    tokio::time::pause();
    tokio::time::advance(lifetime).await;
    tokio::time::resume();
    let started = std::time::Instant::now();
    let fresh = token_of(&app).await;
    assert_ne!(fresh, first, "an expired app token is never served");
    assert_eq!(creates(), 3, "the request fetched its own token");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the request waited on the frozen renewal: {:?}",
        started.elapsed()
    );
}
