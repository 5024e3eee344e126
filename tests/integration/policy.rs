//! Rule 3: the route's policy runs on every request, before elevation.

use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, MockEndpoint},
};

use crate::support::harness;

#[tokio::test]
async fn the_default_policy_admits_people_and_refuses_apps_and_unknown() {
    let h = harness().await;
    for subject in [SubjectType::Visitor, SubjectType::Member, SubjectType::User] {
        assert_eq!(
            h.get("/whoami", Some(&h.mint(subject))).await.status,
            200,
            "{subject}"
        );
    }
    for subject in [SubjectType::App, SubjectType::Unknown] {
        h.get("/whoami", Some(&h.mint(subject)))
            .await
            .assert_problem(403, "forbidden");
    }
    assert_eq!(
        h.get("/apps", Some(&h.mint(SubjectType::App))).await.status,
        200
    );
}

#[tokio::test]
async fn presets_route_by_subject_type() {
    let h = harness().await;
    let visitor = h.mint(SubjectType::Visitor);
    let member = h.mint(SubjectType::Member);
    let user = h.mint(SubjectType::User);
    assert_eq!(h.get("/members", Some(&member)).await.status, 200);
    h.get("/members", Some(&visitor))
        .await
        .assert_problem(403, "forbidden");
    h.get("/members", Some(&user))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(h.get("/users", Some(&user)).await.status, 200);
    h.get("/users", Some(&member))
        .await
        .assert_problem(403, "forbidden");
    h.get("/users", Some(&visitor))
        .await
        .assert_problem(403, "forbidden");
}

#[tokio::test]
async fn a_denied_caller_costs_no_app_token() {
    let h = harness().await;
    let visitor = h
        .wix
        .mint(CallerSpec::new(SubjectType::Visitor).instance("inst-denied"));
    for _ in 0..3 {
        h.get("/members", Some(&visitor))
            .await
            .assert_problem(403, "forbidden");
    }
    assert_eq!(h.wix.calls(MockEndpoint::CreateAccessToken), 0);
    assert_eq!(h.handler_calls(), 0);
}

#[tokio::test]
async fn the_policy_is_checked_on_every_request_even_with_a_cached_identity() {
    let h = harness().await;
    let member = h.mint(SubjectType::Member);
    assert_eq!(h.get("/members", Some(&member)).await.status, 200);
    // Same token, identity now cached: another route's policy still applies.
    h.get("/users", Some(&member))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(h.get("/members", Some(&member)).await.status, 200);
    h.get("/users", Some(&member))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(h.wix.token_info_calls_for(&member), 1);
    assert_eq!(h.handler_calls(), 2);
}

#[tokio::test]
async fn composed_policies_with_custom_predicates() {
    let h = harness().await;
    let right_site = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).site_id("site-1"));
    let wrong_site = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).site_id("site-2"));
    let visitor = h
        .wix
        .mint(CallerSpec::new(SubjectType::Visitor).site_id("site-1"));
    assert_eq!(
        h.get("/site-1-members", Some(&right_site)).await.status,
        200
    );
    h.get("/site-1-members", Some(&wrong_site))
        .await
        .assert_problem(403, "forbidden");
    h.get("/site-1-members", Some(&visitor))
        .await
        .assert_problem(403, "forbidden");
}
