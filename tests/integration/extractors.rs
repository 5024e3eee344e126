//! Rule 6: extensions and extractors; the rejection in response extensions.

use axum::{Router, body::Body, routing::get};
use bytes::Bytes;
use http::{Request, Response};
use tower::ServiceExt;
use wix_elevate::{Rejection, RejectionKind, SubjectType};

use crate::support::harness;

#[tokio::test]
async fn extractors_without_the_layer_answer_500_naming_it() {
    let h = harness().await;
    let token = h.mint(SubjectType::Member);
    let answer = h.get("/misconfigured", Some(&token)).await;
    assert_eq!(answer.status, 500);
    assert!(answer.body.contains("ElevateLayer"), "{}", answer.body);
    assert_eq!(h.get("/open", Some(&token)).await.body, "anonymous");
}

#[tokio::test]
async fn the_rejection_is_in_the_response_extensions_and_the_response_is_replaceable() {
    let h = harness().await;
    let plain = |r: &Rejection| {
        let mut res = Response::new(Bytes::from_static(b"go away"));
        *res.status_mut() = r.status();
        res
    };
    let app = Router::new().route(
        "/",
        get(|| async { "ran" }).route_layer(h.elevator.layer().on_rejection(plain)),
    );
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let rejection = res
        .extensions()
        .get::<Rejection>()
        .expect("rejection extension");
    assert_eq!(rejection.kind(), RejectionKind::MissingToken);
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"go away");
}

#[tokio::test]
async fn rejections_are_not_cacheable() {
    let h = harness().await;
    let answer = h.get("/whoami", None).await;
    assert_eq!(answer.header("cache-control"), Some("no-store"));
}

/// New-user friction: `calls_to` and `requests_to` count the built-in
/// endpoints the way they count registered operations.
#[tokio::test]
async fn calls_to_counts_built_in_endpoints_like_registered_ones() {
    use wix_elevate::test_util::MockEndpoint;
    let h = crate::support::harness().await;
    let api = h
        .elevator
        .app_client("counted")
        .allow("GET /apps/v1/instance")
        .build()
        .unwrap()
        .for_instance("inst-counted");
    assert_eq!(h.wix.calls_to("GET /apps/v1/instance"), 0);
    api.get("/apps/v1/instance").send().await.unwrap();
    assert_eq!(h.wix.calls_to("GET /apps/v1/instance"), 1);
    assert_eq!(h.wix.calls(MockEndpoint::GetAppInstance), 1);
    assert_eq!(h.wix.calls_to("POST /oauth2/token"), 1);
    let grant = &h.wix.requests_to("POST /oauth2/token")[0];
    assert!(
        String::from_utf8_lossy(&grant.body).contains("inst-counted"),
        "the recorded Create Access Token call carries its instance"
    );
    assert_eq!(
        h.wix.requests_to("GET /apps/v1/instance")[0].instance_id,
        "inst-counted"
    );
}
