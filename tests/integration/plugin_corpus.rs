//! The service-plugin corpus: each call judged by Wix's own SDK
//! (`@wix/sdk`'s `servicePlugins.parseJWT`, with `AppStrategy({appId,
//! publicKey})`) and by [`PluginVerifier`], side by side, agreeing except
//! where the crate differs by design.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wix_elevate::{
    plugin::PluginVerifier,
    test_util::{
        MockServicePlugin, OTHER_WEBHOOK_PRIVATE_KEY, WEBHOOK_PRIVATE_KEY, WEBHOOK_PUBLIC_KEY,
    },
    webhook::WebhookKeys,
};

use crate::interop::{compare_verdicts, prepared, sdk_verdicts, verdict, with_crit_header};

const APP: &str = "mock-app-id";

/// The verdicts that differ by design, and why.
const BY_DESIGN: [(&str, &str); 4] = [
    (
        "RS512 with the app's key",
        "Wix signs RS256; the SDK does not bind the key to it",
    ),
    (
        "no exp",
        "a plugin call that never expires could be replayed forever; the SDK accepts one",
    ),
    (
        "metadata without instanceId",
        "without an instance there is no site to act for; the SDK does not look",
    ),
    (
        "expired 2 s ago",
        "a 5 s leeway for clocks; the SDK has none",
    ),
];

/// The corpus: a name and a token, all for app [`APP`] and the mock's key.
fn corpus() -> Vec<(&'static str, String)> {
    let private = EncodingKey::from_rsa_pem(WEBHOOK_PRIVATE_KEY.as_bytes()).unwrap();
    let sign =
        |header: Header, claims: &Value| jsonwebtoken::encode(&header, claims, &private).unwrap();
    let rs256 = || Header::new(Algorithm::RS256);
    let call = || {
        MockServicePlugin::additional_fees("inst-corpus", json!([{"id": "li-1", "quantity": 1}]))
            .app_id(APP)
            .member("m-1")
    };
    let good = call().sign();
    let parts: Vec<&str> = good.split('.').collect();
    let claims = call().claims();
    let now = claims["iat"].as_u64().unwrap();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = claims.clone();
        edit(&mut claims);
        sign(rs256(), &claims)
    };
    let mut kid = rs256();
    kid.kid = Some("some-old-key".into());
    kid.jku = Some("https://attacker.example/jwks.json".into());
    let crit = with_crit_header(parts[1]);
    vec![
        ("valid", good.clone()),
        ("another app's aud", call().app_id("another-app").sign()),
        ("aud a list holding the app id", with(&|c| c["aud"] = json!(["another-app", APP]))),
        ("no aud", with(&|c| drop(c.as_object_mut().unwrap().remove("aud")))),
        ("another iss", call().issuer(Some("wix.com.attacker.example")).sign()),
        ("no iss", call().issuer(None).sign()),
        ("expired a minute ago", call().expires_in(std::time::Duration::ZERO).sign()),
        ("expired 2 s ago", with(&|c| c["exp"] = json!(now - 2))),
        ("nbf an hour ahead", with(&|c| c["nbf"] = json!(now + 3600))),
        ("no exp", call().without_exp().sign()),
        ("exp a string", with(&|c| c["exp"] = json!((now + 3600).to_string()))),
        ("signed with another key", call().sign_with(OTHER_WEBHOOK_PRIVATE_KEY)),
        (
            "alg none",
            format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]),
        ),
        (
            "HS256 keyed with the public key",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(WEBHOOK_PUBLIC_KEY.as_bytes()),
            )
            .unwrap(),
        ),
        ("RS512 with the app's key", sign(Header::new(Algorithm::RS512), &claims)),
        ("kid and jku headers", sign(kid, &claims)),
        ("crit header naming an extension", crit),
        ("truncated signature", format!("{}.{}.{}", parts[0], parts[1], &parts[2][..parts[2].len() - 10])),
        (
            "altered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(
                    json!({"data": claims["data"], "iss": "wix.com", "aud": APP, "exp": now + 99_999}).to_string()
                ),
                parts[2]
            ),
        ),
        ("data as a JSON string", with(&|c| c["data"] = json!(c["data"].to_string()))),
        (
            "metadata without appExtensionType",
            with(&|c| drop(c["data"]["metadata"].as_object_mut().unwrap().remove("appExtensionType"))),
        ),
        (
            "metadata without instanceId",
            with(&|c| drop(c["data"]["metadata"].as_object_mut().unwrap().remove("instanceId"))),
        ),
        ("not a JWT", json!({"request": {}, "metadata": {"appExtensionType": "X"}}).to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plugin_corpus_gets_the_same_verdicts_from_wix_sdk_and_the_crate() {
    let Some((tools, dir)) = prepared().await else {
        return;
    };
    let corpus = corpus();
    let cases: Vec<Value> = corpus
        .iter()
        .map(|(name, token)| json!({"name": name, "token": token, "key": WEBHOOK_PUBLIC_KEY, "appId": APP}))
        .collect();
    let sdk = sdk_verdicts(&tools, &dir, "plugins.mjs", &cases);
    let verifier = PluginVerifier::new(APP, WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap());
    let rows: Vec<_> = corpus
        .iter()
        .map(|(name, token)| {
            let ours = verdict(
                verifier
                    .verify(token.as_bytes())
                    .map(|envelope| envelope.metadata().app_extension_type().to_owned())
                    .map_err(|refused| (refused.status().as_u16(), refused.kind().code())),
            );
            let theirs = sdk[*name].as_str().unwrap().to_owned();
            (*name, theirs, ours)
        })
        .collect();
    compare_verdicts(&rows, &BY_DESIGN, 15);
}
