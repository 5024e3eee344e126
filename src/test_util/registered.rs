//! Operations registered with `MockWix::on` (answered before the built-in
//! routes), and the record of every call `calls_to` counts.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    response::Response,
};

use super::{
    server::{apply, check_app_token, json_response, wix_error},
    spec::{MockEndpoint, MockRequest},
    state::{MockState, built_in},
};

/// An operation registered with `MockWix::on` (the latest that matches),
/// before any built-in route.
pub(super) async fn registered_first(
    State(state): State<Arc<MockState>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let found = {
        let inner = state.lock();
        inner
            .registered
            .iter()
            .rev()
            .find(|op| op.matches(request.method(), request.uri().path()))
            .map(|op| (op.key.clone(), op.handler.clone()))
    };
    let Some((key, handler)) = found else {
        return match built_in(request.method(), request.uri().path()) {
            Some(key) => next.run(recorded(&state, key, request).await).await,
            None => next.run(request).await,
        };
    };
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let (latency, fault) = state.begin(MockEndpoint::Api);
    let body = axum::body::to_bytes(Body::new(body), 4 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut call = MockRequest {
        method: parts.method,
        path,
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        instance_id: String::new(),
    };
    let checked = check_app_token(&state, &call.headers);
    if let Ok(instance) = &checked {
        call.instance_id.clone_from(instance);
    }
    state
        .lock()
        .received
        .entry(key)
        .or_default()
        .push(call.clone());
    state.wait_released(MockEndpoint::Api).await;
    if let Some(response) = apply(latency, fault).await {
        return response;
    }
    if let Err((status, message, code)) = checked {
        return wix_error(status, message, code);
    }
    let reply = handler(&call);
    let mut response = json_response(reply.status, &reply.body);
    response.headers_mut().extend(reply.headers);
    response
}

/// Record a call to a built-in endpoint under `key`, as `calls_to` and
/// `requests_to` read them, and hand the request on.
async fn recorded(state: &MockState, key: String, request: Request) -> Request {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 4 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let instance_id = check_app_token(state, &parts.headers).unwrap_or_default();
    let call = MockRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body: body.clone(),
        instance_id,
    };
    state.lock().received.entry(key).or_default().push(call);
    Request::from_parts(parts, Body::from(body))
}
