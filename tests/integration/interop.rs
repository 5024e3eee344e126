//! Wix's own JavaScript SDK and a real browser against the mock Wix and the
//! quickstart: `tests/interop/` (Node's test runner, `@wix/sdk`,
//! `@wix/site`, `@wix/dashboard`, and playwright-core driving Debian's
//! Chromium). Needs `node`, `npm` and `chromium`; `.ci/run` installs them.
//! Without them this test says loudly that it did not run, and under
//! `CI=true` it fails.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::json;
use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, MockEndpoint},
};

use crate::quickstart::start_against_another_wix;

pub(crate) struct Tools {
    pub(crate) node: PathBuf,
    npm: PathBuf,
    chromium: PathBuf,
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The tools, or `None` after saying loudly why the suite is skipped
/// (a failure under `CI=true`).
fn tools() -> Option<Tools> {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| find("chromium"))
        .or_else(|| find("chromium-browser"));
    match (find("node"), find("npm"), chromium) {
        (Some(node), Some(npm), Some(chromium)) => Some(Tools {
            node,
            npm,
            chromium,
        }),
        missing => {
            let message = format!(
                "SKIPPED: the Wix SDK and browser interop suite needs node, npm and chromium \
                 (found node: {}, npm: {}, chromium: {}); `apt-get install -y nodejs npm chromium`",
                missing.0.is_some(),
                missing.1.is_some(),
                missing.2.is_some()
            );
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("\n!!!!! {message} !!!!!\n");
            None
        }
    }
}

/// `npm ci` when the installed packages are missing or older than the lockfile.
fn install_packages(dir: &Path, npm: &Path) {
    let installed = dir.join("node_modules/.package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&installed).is_some_and(|i| Some(i) >= modified(&dir.join("package-lock.json"))) {
        return;
    }
    let out = Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .expect("npm runs");
    assert!(
        out.status.success(),
        "npm ci failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tools and `tests/interop/` with its packages installed, or `None`
/// (see [`tools`]).
pub(crate) async fn prepared() -> Option<(Tools, PathBuf)> {
    let tools = tools()?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let (npm, install_dir) = (tools.npm.clone(), dir.clone());
    tokio::task::spawn_blocking(move || install_packages(&install_dir, &npm))
        .await
        .unwrap();
    Some((tools, dir))
}

/// What Wix's SDK says of each case: `script` (in `tests/interop`) run on
/// `cases` (written to `target/interop/<script>.json`), its verdicts by
/// case name.
pub(crate) fn sdk_verdicts(
    tools: &Tools,
    dir: &Path,
    script: &str,
    cases: &[serde_json::Value],
) -> serde_json::Map<String, serde_json::Value> {
    let file = artifacts().join(format!("{script}.json"));
    std::fs::write(&file, serde_json::to_vec(cases).unwrap()).unwrap();
    let out = Command::new(&tools.node)
        .arg(script)
        .current_dir(dir)
        .env("CORPUS", &file)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the SDK's verdicts")
}

/// A verdict for a case: the crate's `Ok(what)` as `accepted <what>`, a
/// refusal as `refused: <status> (<code>)`.
pub(crate) fn verdict(outcome: Result<String, (u16, &str)>) -> String {
    match outcome {
        Ok(what) => format!("accepted {what}"),
        Err((status, code)) => format!("refused: {status} ({code})"),
    }
}

/// Print the SDK's and the crate's verdicts side by side (`(case, theirs,
/// ours)`), and insist on at least `at_least` cases that agree, except the
/// ones `by_design` names, which must differ.
pub(crate) fn compare_verdicts(
    rows: &[(&str, String, String)],
    by_design: &[(&str, &str)],
    at_least: usize,
) {
    println!("| case | @wix/sdk | wix-elevate |\n|---|---|---|");
    let mut mismatches = Vec::new();
    for (name, theirs, ours) in rows {
        println!("| {name} | {theirs} | {ours} |");
        let agree = theirs.starts_with("accepted") == ours.starts_with("accepted");
        let designed = by_design.iter().any(|(case, _)| case == name);
        if agree == designed {
            mismatches.push((name, theirs, ours));
        }
    }
    assert!(
        rows.len() >= at_least,
        "at least {at_least} cases, {} here",
        rows.len()
    );
    assert!(
        mismatches.is_empty(),
        "verdicts that should agree and do not, or differ by design and do not: {mismatches:#?}"
    );
}

/// The token whose payload is `payload` (base64url), re-signed with the
/// mock's key under a header that names a `crit` extension.
pub(crate) fn with_crit_header(payload: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use jsonwebtoken::{Algorithm, EncodingKey};
    use wix_elevate::test_util::WEBHOOK_PRIVATE_KEY;
    let private = EncodingKey::from_rsa_pem(WEBHOOK_PRIVATE_KEY.as_bytes()).unwrap();
    let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT","crit":["x-wix"],"x-wix":1}"#);
    let input = format!("{head}.{payload}");
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &private, Algorithm::RS256).unwrap();
    format!("{input}.{signature}")
}

/// `target/interop/`, beside the test binary's profile directory.
pub(crate) fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<binary>")
        .to_path_buf();
    let dir = target.join("interop");
    std::fs::create_dir_all(&dir).expect("target/interop");
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn wix_sdk_and_a_real_browser_call_the_quickstart() {
    let Some((tools, dir)) = prepared().await else {
        return;
    };

    let (wix, quickstart) =
        start_against_another_wix(&[("RATE_LIMIT_PER_CALLER_PER_MIN", "5")]).await;
    let mint = |spec: CallerSpec| wix.mint(spec.instance("sdk-instance"));
    let tokens = json!({
        "visitor": mint(CallerSpec::new(SubjectType::Visitor)),
        "member": mint(CallerSpec::new(SubjectType::Member)),
        "user": mint(CallerSpec::new(SubjectType::User)),
        "limited": mint(CallerSpec::new(SubjectType::Visitor)),
        "foreign": mint(CallerSpec::new(SubjectType::Member).client_id("another-app")),
    });
    let screenshot = artifacts().join("browser.png");
    let mut node = Command::new(&tools.node);
    node.args([
        "--test",
        "--test-concurrency=1",
        "sdk.test.mjs",
        "browser.test.mjs",
    ])
    .current_dir(&dir)
    .env("WIX_BASE_URL", wix.base_url())
    .env("WIX_APP_ID", wix.app_id())
    .env("WIX_APP_SECRET", wix.app_secret())
    .env("QUICKSTART_URL", &quickstart.url)
    .env("TOKENS", tokens.to_string())
    .env("CHROMIUM", &tools.chromium)
    .env("SCREENSHOT", &screenshot);
    let out = tokio::task::spawn_blocking(move || node.output().expect("node runs"))
        .await
        .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "interop suite failed:\n{report}");
    eprintln!("{report}");
    assert!(
        screenshot.is_file(),
        "a screenshot at {}",
        screenshot.display()
    );
    // The SDK's own AppStrategy minted one app token (its strategy caches
    // it), and the quickstart one for every route and caller together.
    assert_eq!(wix.access_token_calls_for("sdk-instance"), 2);
    assert_eq!(wix.calls(MockEndpoint::Other), 0, "no call went astray");
}

/// One webhook, the key given to Wix's SDK, and the keys given to the crate.
struct Case {
    name: &'static str,
    token: String,
    sdk_key: String,
    crate_keys: Vec<String>,
}

/// The verdicts that differ by design, and why.
const BY_DESIGN: [(&str, &str); 4] = [
    (
        "RS512 with the app's key",
        "Wix signs RS256; the SDK does not bind the key to it",
    ),
    (
        "expired 2 s ago",
        "a 5 s leeway for clocks; the SDK has none",
    ),
    (
        "key as \\n-escaped PEM",
        "keys are stored so (Wix's sample app unescapes them); the SDK does not read it",
    ),
    (
        "key as base64 of the DER",
        "the form a key takes without its PEM armour; the SDK does not read it",
    ),
];

fn webhook_corpus() -> Vec<Case> {
    use base64::{
        Engine,
        engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    };
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use wix_elevate::test_util::{
        MockWebhook, OTHER_WEBHOOK_PRIVATE_KEY, OTHER_WEBHOOK_PUBLIC_KEY, WEBHOOK_PRIVATE_KEY,
        WEBHOOK_PUBLIC_KEY,
    };
    let pem = WEBHOOK_PUBLIC_KEY.to_owned();
    let private = EncodingKey::from_rsa_pem(WEBHOOK_PRIVATE_KEY.as_bytes()).unwrap();
    let sign = |header: Header, claims: &serde_json::Value| {
        jsonwebtoken::encode(&header, claims, &private).unwrap()
    };
    let webhook = MockWebhook::app_removed("inst-corpus");
    let claims = webhook.claims();
    let good = webhook.sign();
    let parts: Vec<&str> = good.split('.').collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let with = |name: &'static str, token: String| Case {
        name,
        token,
        sdk_key: pem.clone(),
        crate_keys: vec![pem.clone()],
    };
    let keyed = |name: &'static str, key: String| Case {
        name,
        token: good.clone(),
        sdk_key: key.clone(),
        crate_keys: vec![key],
    };
    let mut late = claims.clone();
    late["exp"] = json!(now - 2);
    let mut future = claims.clone();
    future["nbf"] = json!(now + 3600);
    let mut kid = Header::new(Algorithm::RS256);
    kid.kid = Some("some-old-key".into());
    kid.jku = Some("https://attacker.example/jwks.json".into());
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    vec![
        with("valid", good.clone()),
        with("no exp", webhook.clone().without_exp().sign()),
        with(
            "unknown event type",
            MockWebhook::new("SomethingNew", "inst-corpus", json!({"x": 1})).sign(),
        ),
        with("kid and jku headers", sign(kid, &claims)),
        with(
            "expired a minute ago",
            webhook.clone().expires_in(std::time::Duration::ZERO).sign(),
        ),
        with(
            "expired 2 s ago",
            sign(Header::new(Algorithm::RS256), &late),
        ),
        with(
            "nbf in the future",
            sign(Header::new(Algorithm::RS256), &future),
        ),
        with(
            "signed with another key",
            webhook.sign_with(OTHER_WEBHOOK_PRIVATE_KEY),
        ),
        with(
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
                parts[1]
            ),
        ),
        with(
            "HS256 keyed with the public key",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(WEBHOOK_PUBLIC_KEY.as_bytes()),
            )
            .unwrap(),
        ),
        with(
            "RS512 with the app's key",
            sign(Header::new(Algorithm::RS512), &claims),
        ),
        with(
            "truncated signature",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                &parts[2][..parts[2].len() - 10]
            ),
        ),
        with(
            "altered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD
                    .encode(json!({"data": claims["data"], "exp": now + 99_999}).to_string()),
                parts[2]
            ),
        ),
        with(
            "nested data not a string",
            sign(
                Header::new(Algorithm::RS256),
                &json!({"data": {"eventType": "AppRemoved"}, "exp": now + 3600}),
            ),
        ),
        with("not a JWT", r#"{"eventType":"AppRemoved"}"#.to_owned()),
        with(
            "crit header naming an extension",
            with_crit_header(parts[1]),
        ),
        with("exp a string", {
            let mut claims = claims.clone();
            claims["exp"] = json!((now + 3600).to_string());
            sign(Header::new(Algorithm::RS256), &claims)
        }),
        with("nbf null", {
            let mut claims = claims.clone();
            claims["nbf"] = serde_json::Value::Null;
            sign(Header::new(Algorithm::RS256), &claims)
        }),
        with("iat a string", {
            let mut claims = claims.clone();
            claims["iat"] = json!(now.to_string());
            sign(Header::new(Algorithm::RS256), &claims)
        }),
        Case {
            name: "rotated key",
            token: webhook.sign_with(OTHER_WEBHOOK_PRIVATE_KEY),
            sdk_key: OTHER_WEBHOOK_PUBLIC_KEY.to_owned(),
            // The old and the new key, both configured during the rotation.
            crate_keys: vec![pem.clone(), OTHER_WEBHOOK_PUBLIC_KEY.to_owned()],
        },
        keyed("key as base64 of the PEM", STANDARD.encode(&pem)),
        keyed("key as \\n-escaped PEM", pem.trim().replace('\n', "\\n")),
        keyed("key as base64 of the DER", der),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_corpus_gets_the_same_verdicts_from_wix_sdk_and_the_crate() {
    use wix_elevate::webhook::{WebhookKeys, WebhookVerifier};
    let Some((tools, dir)) = prepared().await else {
        return;
    };
    let corpus = webhook_corpus();
    let cases: Vec<serde_json::Value> = corpus
        .iter()
        .map(|c| json!({"name": c.name, "token": c.token, "key": c.sdk_key}))
        .collect();
    let sdk = sdk_verdicts(&tools, &dir, "webhooks.mjs", &cases);
    let rows: Vec<_> = corpus
        .iter()
        .map(|case| {
            let mut keys = WebhookKeys::new();
            for key in &case.crate_keys {
                keys = keys.key(key).expect("the crate reads the key");
            }
            let ours = verdict(
                WebhookVerifier::new(keys)
                    .verify(case.token.as_bytes())
                    .map(|event| event.event_type().to_owned())
                    .map_err(|refused| (refused.status().as_u16(), refused.kind().code())),
            );
            let theirs = sdk[case.name].as_str().unwrap().to_owned();
            (case.name, theirs, ours)
        })
        .collect();
    compare_verdicts(&rows, &BY_DESIGN, 12);
}
