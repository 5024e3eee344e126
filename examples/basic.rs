//! Run with: `cargo run --example basic` (against the in-process mock Wix),
//! or set `WIX_APP_ID`, `WIX_APP_SECRET` and `WIX_API_BASE_URL` for real Wix.
//! It listens on `BIND_ADDR` (default `127.0.0.1:3000`).
//!
//! The smallest useful backend: one route any caller may use, one that only
//! Wix users may use and that may make exactly one Wix call.

use axum::{Json, Router, routing::get};
use serde_json::{Value, json};
use wix_elevate::{Caller, SubjectTypes, WixApi, WixApiError, test_util::MockWix};

async fn whoami(caller: Caller) -> Json<Value> {
    Json(
        json!({ "subjectType": caller.subject_type().as_str(), "instanceId": caller.instance_id() }),
    )
}

/// Calls Wix with the app token; the token itself never reaches the handler.
async fn instance(api: WixApi) -> Result<Json<Value>, WixApiError> {
    Ok(Json(api.get("/apps/v1/instance").await?.json()?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (builder, mock) = match std::env::var("WIX_APP_ID") {
        Ok(app_id) => {
            let builder = wix_elevate::Elevator::builder(app_id, std::env::var("WIX_APP_SECRET")?);
            let base_url = std::env::var("WIX_API_BASE_URL")
                .unwrap_or_else(|_| wix_elevate::WIX_API_BASE_URL.into());
            (builder.base_url(base_url), None)
        }
        Err(_) => {
            let mock = MockWix::start().await?;
            (mock.elevator_builder(), Some(mock))
        }
    };
    let elevator = builder.build()?;
    let app = Router::new()
        .route("/api/whoami", get(whoami).route_layer(elevator.layer()))
        .route(
            "/api/dashboard/instance",
            get(instance).route_layer(
                elevator
                    .layer()
                    .policy(SubjectTypes::wix_users())
                    .allow("GET /apps/v1/instance"),
            ),
        );
    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    if let Some(mock) = &mock {
        let user = mock.mint(wix_elevate::test_util::CallerSpec::new(
            wix_elevate::SubjectType::User,
        ));
        println!("curl -s http://{addr}/api/dashboard/instance -H 'Authorization: {user}'");
    }
    println!("listening on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
