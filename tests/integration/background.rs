//! Wix calls outside a request (a webhook handler, a job): declared
//! operations only, the same app-token cache and recovery as requests.

use wix_elevate::{
    SubjectType, WixApiErrorKind,
    test_util::{CallerSpec, MockEndpoint},
};

use crate::common::harness;

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
        .layer()
        .route_name("nightly-sync")
        .allow("GET /apps/v1/instance")
        .unwrap();
    let api = job.api_for_instance("inst-job");
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
    let fresh = job.api_for_instance("inst-new");
    assert!(fresh.get("/apps/v1/instance").await.is_ok());
    assert_eq!(h.wix.access_token_calls_for("inst-new"), 1);
}
