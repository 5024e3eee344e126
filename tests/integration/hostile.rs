//! Hostile input, as property tests: any header value and any Wix answer.
//! No panic, no handler call; a 4xx for any malformed caller token, a 502
//! for any malformed Token Info answer.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Router, body::Body, routing::get};
use bytes::Bytes;
use http::{HeaderValue, Request};
use proptest::prelude::*;
use tower::ServiceExt;

use crate::support::{Harness, harness_with};
use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, MockEndpoint, MockWix},
};

struct Rig {
    rt: tokio::runtime::Runtime,
    wix: MockWix,
    app: Router,
    handler_calls: Arc<AtomicUsize>,
}

fn rig() -> Rig {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Harness { wix, elevator, .. } = rt.block_on(harness_with(|b| {
        b.max_token_len(512).guards(
            wix_elevate::WixGuards::default().breaker(u32::MAX, std::time::Duration::from_secs(5)),
        )
    }));
    let handler_calls = Arc::new(AtomicUsize::new(0));
    let calls = handler_calls.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { "ran" }
        })
        .route_layer(elevator.layer()),
    );
    Rig {
        rt,
        wix,
        app,
        handler_calls,
    }
}

impl Rig {
    /// The status and the problem body's `code`.
    fn answer(&self, authorization: Option<HeaderValue>) -> (u16, String) {
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        if let Some(value) = authorization {
            req.headers_mut().insert("authorization", value);
        }
        self.rt.block_on(async {
            let res = self.app.clone().oneshot(req).await.unwrap();
            let status = res.status().as_u16();
            let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            (status, code)
        })
    }
}

/// Byte strings that are legal header values (visible ASCII, space, tab,
/// obs-text), biased towards the interesting ones.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => proptest::sample::select(b"Bb eEaArRiI -._~+/=\t,;\"'\\:@%".to_vec()),
        2 => 0x21u8..0x7f,
        1 => 0x80u8..=0xff,
    ];
    prop_oneof![
        proptest::collection::vec(byte.clone(), 0..64),
        proptest::collection::vec(byte, 500..600),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_authorization_header_is_refused_without_running_the_handler(bytes in header_bytes()) {
        thread_local!(static RIG: Rig = rig());
        RIG.with(|rig| {
            let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
            let before = rig.wix.calls(MockEndpoint::TokenInfo);
            let (status, code) = rig.answer(Some(value));
            let asked = rig.wix.calls(MockEndpoint::TokenInfo) - before;
            prop_assert_eq!(status, 401, "{:?}", String::from_utf8_lossy(&bytes));
            // Malformed input never reaches Wix; a well-formed unknown
            // token costs one Token Info call, which refuses it.
            match code.as_str() {
                "missing_token" | "malformed_token" => prop_assert_eq!(asked, 0, "{}", code),
                "invalid_token" => prop_assert!(asked <= 1, "{} calls", asked),
                other => prop_assert!(false, "unexpected code {:?}", other),
            }
            prop_assert_eq!(rig.handler_calls.load(Ordering::SeqCst), 0);
            Ok(())
        })?;
    }

    #[test]
    fn any_malformed_token_info_answer_is_a_502(body in malformed_token_info()) {
        thread_local!(static RIG: Rig = rig());
        RIG.with(|rig| {
            rig.wix.set_token_info_body(Some(Bytes::from(body.clone())));
            let token = rig.wix.mint(CallerSpec::new(SubjectType::Member));
            let before = rig.wix.calls(MockEndpoint::TokenInfo);
            let (status, code) = rig.answer(Some(HeaderValue::from_str(&token).unwrap()));
            prop_assert_eq!(status, 502, "{:?}", String::from_utf8_lossy(&body));
            prop_assert_eq!(code, "upstream_failed");
            prop_assert!(rig.wix.calls(MockEndpoint::TokenInfo) > before);
            prop_assert_eq!(rig.handler_calls.load(Ordering::SeqCst), 0);
            Ok(())
        })?;
    }
}

/// Bodies that are not a Token Info object: not JSON, not an object, or an
/// object whose decision fields have impossible types.
fn malformed_token_info() -> impl Strategy<Value = Vec<u8>> {
    let wrong_value = prop_oneof![
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("\"maybe\"".to_owned()),
        Just("1.5".to_owned()),
        Just("-1e400".to_owned()),
        "[a-z]{1,8}".prop_map(|s| format!("\"{s}x\"")),
    ];
    let field = proptest::sample::select(vec![
        "active",
        "exp",
        "iat",
        "subjectType",
        "instanceId",
        "clientId",
        "subjectId",
        "siteId",
    ]);
    prop_oneof![
        // Not JSON at all, or JSON but not an object.
        "[^{ \t\r\n][ -~]{0,40}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..64)
            .prop_filter("not an object", |b| b.trim_ascii_start().first()
                != Some(&b'{')),
        // An object with one decision field of an impossible type (fields
        // no decision reads, and `subjectType`, take anything).
        (field, wrong_value).prop_filter_map("a type the field cannot take", |(field, value)| {
            let impossible = match field {
                "active" => true,
                "exp" => value != "1.5",
                "instanceId" | "clientId" | "subjectId" => !value.starts_with('"'),
                _ => false,
            };
            impossible.then(|| format!(r#"{{"{field}":{value}}}"#).into_bytes())
        }),
    ]
}
