//! Plan-gated routes and the `instance` parameter of dashboard pages.

use std::time::Duration;

use axum::{Router, routing::get};
use serde_json::Value;
use wix_elevate::{
    Caller, PolicyExt, SubjectType, SubjectTypes, policy,
    test_util::{CallerSpec, MockEndpoint},
};

use crate::support::{Harness, harness, harness_with};

async fn answer(app: &Router, path: &str, token: &str) -> (u16, Value) {
    crate::support::call(app, "GET", path, token).await
}

async fn plan_of(caller: Caller) -> String {
    format!("{:?}", caller.plan())
}

/// `/premium`: Wix users of sites on `premium` or `business`; `/paid`:
/// anyone on any paid plan; `/free-tier`: sites without one;
/// `/free-tier-or-members`: sites not on `premium`, or members; `/settings`: Wix users, credential also from
/// `?instance=`.
fn app(h: &Harness) -> Router {
    Router::new()
        .route(
            "/premium",
            get(plan_of).route_layer(
                h.elevator
                    .layer()
                    .route_name("premium")
                    .policy(SubjectTypes::wix_users().and(policy::plans(["premium", "business"]))),
            ),
        )
        .route(
            "/paid",
            get(plan_of).route_layer(h.elevator.layer().policy(policy::paid())),
        )
        // A free tier's page: sites without a paid plan (or, combined,
        // members anywhere).
        .route(
            "/free-tier",
            get(plan_of).route_layer(h.elevator.layer().policy(policy::paid().not())),
        )
        .route(
            "/free-tier-or-members",
            get(plan_of).route_layer(
                h.elevator
                    .layer()
                    .policy(policy::plans(["premium"]).not().or(SubjectTypes::members())),
            ),
        )
        .route(
            "/settings",
            get(plan_of).route_layer(
                h.elevator
                    .layer()
                    .policy(SubjectTypes::wix_users())
                    .credential_from_query("instance"),
            ),
        )
}

fn user_on(h: &Harness, plan: Option<&str>, instance: &str) -> String {
    let spec = CallerSpec::new(SubjectType::User).instance(instance);
    h.wix.mint(match plan {
        Some(plan) => spec.plan(plan),
        None => spec,
    })
}

#[tokio::test]
async fn plan_routes_admit_their_plans_and_refuse_others_with_plan_required() {
    let h = harness().await;
    let app = app(&h);
    let free = user_on(&h, None, "i-free");
    let premium = user_on(&h, Some("premium"), "i-premium");
    let business = user_on(&h, Some("business"), "i-business");
    let basic = user_on(&h, Some("basic"), "i-basic");
    let mut table = Vec::new();
    for (name, token) in [
        ("free", &free),
        ("premium", &premium),
        ("business", &business),
        ("basic", &basic),
    ] {
        let (premium_status, body) = answer(&app, "/premium", token).await;
        let (paid_status, _) = answer(&app, "/paid", token).await;
        table.push((name, premium_status, paid_status, body["code"].clone()));
    }
    println!("caller, /premium, /paid: {table:?}");
    let statuses: Vec<(&str, u16, u16)> = table.iter().map(|(n, a, b, _)| (*n, *a, *b)).collect();
    assert_eq!(
        statuses,
        [
            ("free", 403, 403),
            ("premium", 200, 200),
            ("business", 200, 200),
            ("basic", 403, 200)
        ]
    );
    for (name, status, _, code) in &table {
        if *status == 403 {
            assert_eq!(
                code, "plan_required",
                "{name}: its own code, for an upgrade prompt"
            );
        }
    }
    // A member of a premium site is refused for who it is, not its plan.
    let member = h.wix.mint(
        CallerSpec::new(SubjectType::Member)
            .instance("i-premium")
            .plan("premium"),
    );
    let (status, body) = answer(&app, "/premium", &member).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    assert!(
        body.get("appId").is_none() && body.get("instanceId").is_none(),
        "{body}"
    );
    // A plan refusal names the app and the caller's own site, for the
    // frontend's upgrade prompt.
    let (_, body) = answer(&app, "/premium", &basic).await;
    assert_eq!(body["appId"], h.wix.app_id(), "{body}");
    assert_eq!(body["instanceId"], "i-basic", "{body}");
    assert_eq!(body["status"], 403);
    assert_eq!(
        body["detail"],
        "This endpoint needs a paid plan of the app for this site."
    );
}

#[tokio::test]
async fn an_unreadable_plan_is_refused_by_plan_policies_only() {
    let h = harness().await;
    let app = app(&h);
    let token = user_on(&h, None, "i-odd");
    let odd = format!(
        r#"{{"active":true,"exp":"{}","clientId":"{}","instanceId":"i-odd","subjectType":"USER","subjectId":"u-1","vendorProductId":42}}"#,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600,
        h.wix.app_id()
    );
    h.wix.set_token_info_body(Some(odd.into()));
    // Negated or combined, a plan gate never admits a plan it cannot read.
    for path in ["/paid", "/free-tier", "/free-tier-or-members"] {
        let (status, body) = answer(&app, path, &token).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("plan_required")),
            "{path}"
        );
    }
    // Elsewhere the odd field is harmless.
    let (status, _) = answer(&app, "/settings", &token).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_plan_change_takes_effect_when_the_instance_is_forgotten_or_within_the_ttl() {
    for forget in [true, false] {
        let h = harness_with(|b| {
            b.token_info_ttl(Duration::from_millis(if forget { 3_600_000 } else { 50 }))
        })
        .await;
        let app = app(&h);
        // The site's owner upgrades: every token of the site now says
        // premium, the owner's and a member's alike.
        let before = user_on(&h, None, "i-upgrading");
        let member = h
            .wix
            .mint(CallerSpec::new(SubjectType::Member).instance("i-upgrading"));
        assert_eq!(answer(&app, "/paid", &before).await.0, 403);
        assert_eq!(answer(&app, "/paid", &member).await.0, 403);
        h.wix.set_instance_plan("i-upgrading", Some("premium"));
        if forget {
            // Wix's PaidPlanPurchased webhook, wired to the caches.
            h.elevator.forget_instance("i-upgrading").await.unwrap();
        } else {
            // No webhook: the identity TTL passes (the behaviour under test).
            crate::support::skip(Duration::from_millis(80)).await;
        }
        let (status, body) = answer(&app, "/paid", &before).await;
        assert_eq!(status, 200, "forget={forget}: {body}");
        assert_eq!(
            answer(&app, "/paid", &member).await.0,
            200,
            "forget={forget}"
        );
        assert_eq!(h.wix.token_info_calls_for(&before), 2);
    }
}

#[tokio::test]
async fn the_instance_parameter_is_a_credential_on_routes_that_opt_in() {
    let h = harness().await;
    let app = app(&h);
    let token = user_on(&h, Some("premium"), "i-dash");
    // Only where the route opts in.
    let (status, body) = answer(&app, &format!("/paid?instance={token}"), "").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("missing_token"))
    );
    assert_eq!(h.wix.calls(MockEndpoint::TokenInfo), 0);
    let (status, _) = answer(&app, &format!("/settings?instance={token}"), "").await;
    assert_eq!(status, 200);
    // The same cache as a token in Authorization: no second Token Info call.
    assert_eq!(answer(&app, "/settings", &token).await.0, 200);
    assert_eq!(h.wix.token_info_calls_for(&token), 1);
    // Both, differently: 400, and Wix is not asked.
    let other = user_on(&h, None, "i-other");
    let (status, body) = answer(&app, &format!("/settings?instance={other}"), &token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("conflicting_credentials"))
    );
    assert_eq!(h.wix.token_info_calls_for(&other), 0);
    // Both, the same: admitted.
    assert_eq!(
        answer(&app, &format!("/settings?instance={token}"), &token)
            .await
            .0,
        200
    );
    // The same policy: a member's instance token is refused.
    let member = h.wix.mint(CallerSpec::new(SubjectType::Member));
    let (status, _) = answer(&app, &format!("/settings?instance={member}"), "").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn routes_that_read_the_url_credential_send_no_referrer_unless_they_opt_out() {
    let h = harness().await;
    let panel = |layer: wix_elevate::ElevateLayer| {
        get(|| async { "settings" }).route_layer(layer.policy(SubjectTypes::wix_users()))
    };
    let app = Router::new()
        .route(
            "/settings",
            panel(h.elevator.layer().credential_from_query("instance")),
        )
        .route(
            "/own-policy",
            get(|| async { ([("referrer-policy", "same-origin")], "own") })
                .route_layer(h.elevator.layer().credential_from_query("instance")),
        )
        .route(
            "/opted-out",
            panel(
                h.elevator
                    .layer()
                    .credential_from_query("instance")
                    .without_referrer_policy(),
            ),
        )
        .route("/plain", panel(h.elevator.layer()));
    let token = user_on(&h, None, "i-ref");
    let member = h.wix.mint(CallerSpec::new(SubjectType::Member));
    let policy = |path: String| {
        let app = app.clone();
        async move {
            let req = http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            let res = tower::ServiceExt::oneshot(app, req).await.unwrap();
            let value = res
                .headers()
                .get("referrer-policy")
                .map(|v| v.to_str().unwrap().to_owned());
            (res.status().as_u16(), value)
        }
    };
    let no_referrer = Some("no-referrer".to_owned());
    // Served, refused by the policy, and refused for no credential alike.
    assert_eq!(
        policy(format!("/settings?instance={token}")).await,
        (200, no_referrer.clone())
    );
    assert_eq!(
        policy(format!("/settings?instance={member}")).await,
        (403, no_referrer.clone())
    );
    assert_eq!(policy("/settings".into()).await, (401, no_referrer));
    assert_eq!(
        policy(format!("/own-policy?instance={token}")).await,
        (200, Some("same-origin".to_owned())),
        "the handler's own value is kept"
    );
    assert_eq!(
        policy(format!("/opted-out?instance={token}")).await,
        (200, None)
    );
    assert_eq!(
        policy("/plain".into()).await,
        (401, None),
        "a route without it sends none"
    );
}
