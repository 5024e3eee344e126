//! Rule 8: no token and no app secret in any log line (at TRACE), `Debug`
//! output, error body or response.

use std::time::Duration;

use tower::ServiceExt;
use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, Fault, MockEndpoint},
};

use crate::{Captured, support::harness_with};

#[tokio::test]
async fn no_secret_reaches_logs_debug_output_or_responses() {
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::TRACE);

    let h = harness_with(|b| {
        b.http_timeout(Duration::from_millis(300))
            .auth_deadline(Duration::from_millis(700))
    })
    .await;
    h.wix
        .set_app_token_lifetime("inst-s", Duration::from_secs(4));
    let member = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("inst-s"));
    let visitor = h
        .wix
        .mint(CallerSpec::new(SubjectType::Visitor).instance("inst-s"));
    let expired = h.wix.mint(CallerSpec::new(SubjectType::Member).expired());
    let foreign = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).client_id("other"));
    let unknown = "OauthNG.JWS.unknown-caller-token".to_owned();
    let callers = [&member, &visitor, &expired, &foreign, &unknown];

    let mut bodies = String::new();
    let mut record = |answer: crate::support::Answer| {
        bodies.push_str(&answer.body);
        bodies.push_str(&format!("{:?}", answer.headers));
    };
    // Success, denial, refusals, each with and without `Bearer`.
    for caller in callers {
        record(h.get("/instance", Some(caller)).await);
        record(h.get("/members", Some(&format!("Bearer {caller}"))).await);
    }
    // Every kind of Wix failure, on both endpoints.
    for fault in [
        Fault::Status(500),
        Fault::Malformed,
        Fault::NotJson,
        Fault::Drop,
        Fault::Hang,
        Fault::TooManyRequests {
            retry_after_secs: Some(3),
        },
    ] {
        for endpoint in [MockEndpoint::TokenInfo, MockEndpoint::CreateAccessToken] {
            let fresh = h
                .wix
                .mint(CallerSpec::new(SubjectType::Member).instance(format!("inst-{fault:?}")));
            h.wix.fail_times(endpoint, fault, 1);
            record(h.get("/whoami", Some(&fresh)).await);
            record(h.get("/whoami", Some(&fresh)).await);
        }
    }
    // A background renewal of the app token (window opens after 2 s).
    crate::support::skip(Duration::from_millis(2100)).await;
    record(h.get("/instance", Some(&member)).await);
    h.wix
        .wait_for_calls(MockEndpoint::CreateAccessToken, 2)
        .await;

    // Collect every app token Wix issued, by asking through the layer.
    let token_route = axum::Router::new().route(
        "/t",
        axum::routing::get(|t: wix_elevate::ElevatedToken| async move {
            // Debug output of the token, which must be redacted.
            format!("{}\n{t:?}", t.expose_secret())
        })
        .route_layer(h.elevator.layer().expose_app_token()),
    );
    let req = http::Request::get("/t")
        .header("authorization", &member)
        .body(axum::body::Body::empty())
        .unwrap();
    let body = axum::body::to_bytes(token_route.oneshot(req).await.unwrap().into_body(), 1 << 16)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let (app_token, token_debug) = body.split_once('\n').unwrap();
    assert!(
        app_token.starts_with("OauthNG.JWS.mock-app-"),
        "{app_token}"
    );

    let debug_prints = format!(
        "{:?} {:?} {:?}",
        h.elevator,
        h.elevator.layer(),
        token_debug
    );
    drop(_guard);
    let logs = captured.text();

    // The capture really saw the layer at work (so this test can fail).
    assert!(logs.contains("wix_elevate"), "nothing captured:\n{logs}");
    assert!(logs.contains("request rejected"), "{logs}");
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "{logs}");
    // The spans of the Wix calls were captured too, fields and all.
    assert!(
        logs.contains("wix_elevate.wix_call") && logs.contains("otel.name"),
        "{logs}"
    );

    let secrets: Vec<&str> = callers
        .iter()
        .map(|s| s.as_str())
        .chain([h.wix.app_secret(), app_token])
        .collect();
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret:.24}…\n{logs}"
        );
        assert!(
            !bodies.contains(secret),
            "a secret reached a response: {secret:.24}…"
        );
        assert!(
            !debug_prints.contains(secret),
            "a secret reached Debug output: {debug_prints}"
        );
    }
    // Tokens share a prefix; no fragment of any token either.
    assert!(!logs.contains("OauthNG.JWS."), "{logs}");
    assert!(!bodies.contains("OauthNG.JWS."));
}

#[tokio::test]
async fn the_instance_parameter_never_reaches_logs_audit_metrics_or_bodies() {
    use axum::{Router, routing::get};
    use wix_elevate::{SubjectTypes, WixApi, WixApiError};
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::TRACE);
    let h = harness_with(|b| {
        b.token_info_budget_for_new_tokens(crate::support::nz(1), crate::support::nz(4))
    })
    .await;
    let app = Router::new().route(
        "/settings",
        get(|api: WixApi| async move {
            api.get("/apps/v1/instance").await?;
            Ok::<_, WixApiError>("ok")
        })
        .route_layer(
            h.elevator
                .layer()
                .route_name("settings")
                .policy(SubjectTypes::wix_users())
                .allow("GET /apps/v1/instance")
                .credential_from_query("instance"),
        ),
    );
    let user = h
        .wix
        .mint(CallerSpec::new(SubjectType::User).token_len(600));
    let member = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).token_len(600));
    let invented = format!("OauthNG.JWS.{}", "i".repeat(600));
    let mut bodies = String::new();
    let mut send = async |path: String, authorization: &str| {
        let (status, body) = crate::support::call(&app, "GET", &path, authorization).await;
        bodies.push_str(&body.to_string());
        status
    };
    let q = |token: &str| format!("/settings?instance={token}");
    // Admitted (audited Wix call), denied (audited), refused, conflicting,
    // past the budget, and while Wix fails.
    assert_eq!(send(q(&user), "").await, 200);
    assert_eq!(send(q(&member), "").await, 403);
    assert_eq!(send(q(&invented), "").await, 401);
    assert_eq!(send(q(&user), &member).await, 400);
    h.wix.fail(MockEndpoint::TokenInfo, Fault::Status(500));
    let fresh = h
        .wix
        .mint(CallerSpec::new(SubjectType::User).token_len(600));
    assert_eq!(send(q(&fresh), "").await, 502);
    h.wix.clear_faults();
    let mut spent = 0;
    for i in 0..5 {
        if send(q(&format!("{invented}{i}")), "").await == 503 {
            spent += 1;
        }
    }
    assert!(spent > 0, "the budget was spent");
    drop(_guard);
    let logs = captured.text();
    assert!(
        logs.contains("wix_elevate::audit"),
        "audit events were captured"
    );
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "captured at TRACE"
    );
    let metrics = format!("{:?}", h.elevator);
    for secret in [&user, &member, &invented, &fresh] {
        // Any 40 characters of it, so no prefix or slice slips through.
        let probe = &secret[secret.len() - 40..];
        assert!(!logs.contains(probe), "a credential reached the logs");
        assert!(!bodies.contains(probe), "a credential reached a response");
        assert!(!metrics.contains(probe));
    }
    println!(
        "TRACE capture with ?instance= credentials: {} lines, none carrying a credential",
        logs.lines().count()
    );
}

#[tokio::test]
async fn no_webhook_token_key_or_secret_reaches_the_logs() {
    use axum::{Router, routing::post_service};
    use wix_elevate::{
        test_util::{MockWebhook, OTHER_WEBHOOK_PRIVATE_KEY, WEBHOOK_PUBLIC_KEY},
        webhook::{WebhookEndpoint, WebhookKeys, WebhookVerifier},
    };
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::TRACE);
    let h = harness_with(|b| b).await;
    let on_install = h
        .elevator
        .app_client("webhook:installed")
        .allow("GET /apps/v1/instance")
        .build()
        .unwrap();
    let (done, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let webhooks = WebhookEndpoint::builder(
        &h.elevator,
        WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap()),
    )
    .on_event(move |event| {
        let (on_install, done) = (on_install.clone(), done.clone());
        async move {
            if let Some(instance) = event.instance_id() {
                let _ = on_install
                    .for_instance(instance)
                    .get("/apps/v1/instance")
                    .await;
            }
            let _ = done.send(());
        }
    })
    .build();
    let app = Router::new().route("/webhooks", post_service(webhooks));
    let bodies = [
        MockWebhook::app_installed("inst-w").sign(),
        MockWebhook::app_removed("inst-w").sign(),
        MockWebhook::app_removed("inst-w").sign_with(OTHER_WEBHOOK_PRIVATE_KEY),
        MockWebhook::app_removed("inst-w")
            .expires_in(Duration::ZERO)
            .sign(),
        "not a webhook".to_owned(),
    ];
    let mut answers = String::new();
    let mut accepted = 0;
    for body in &bodies {
        let req = http::Request::post("/webhooks")
            .body(axum::body::Body::from(body.clone()))
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        accepted += usize::from(res.status() == 200);
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        answers.push_str(&String::from_utf8_lossy(&bytes));
    }
    assert_eq!(accepted, 2, "{answers}");
    for _ in 0..accepted {
        handled.recv().await.unwrap();
    }
    drop(_guard);
    let logs = captured.text();
    assert!(
        logs.contains("elevated Wix call"),
        "the handler's call was captured"
    );
    for body in &bodies[..4] {
        let signature = body.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(signature),
            "a webhook token reached the logs"
        );
        assert!(
            !answers.contains(signature),
            "a webhook token reached a response"
        );
    }
    let key_body: String = WEBHOOK_PUBLIC_KEY.lines().nth(1).unwrap().to_owned();
    assert!(!logs.contains(&key_body), "the key reached the logs");
    assert!(
        !logs.contains(h.wix.app_secret()),
        "the app secret reached the logs"
    );
}
