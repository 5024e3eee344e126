//! The quickstart's contract, checked by running the example binary that
//! `cargo test` builds, the way a user would.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, MockWix},
};

use crate::support::send_signal;

const ENV: [&str; 14] = [
    "HEADER_READ_TIMEOUT_MS",
    "SHUTDOWN_DEADLINE_MS",
    "REDIS_URL",
    "WIX_NEW_TOKENS_PER_SEC",
    "WIX_DEADLINE_MS",
    "WIX_BREAKER_COOLDOWN_MS",
    "RATE_LIMIT_PER_CALLER_PER_MIN",
    "WIX_API_BASE_URL",
    "WIX_APP_ID",
    "WIX_APP_SECRET",
    "BIND_ADDR",
    "WIX_HTTP_TIMEOUT_MS",
    "WIX_TOKEN_INFO_TTL_SECS",
    "RUST_LOG",
];

fn binary() -> PathBuf {
    crate::support::example::example_binary("quickstart")
}

fn command(envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(binary());
    for name in ENV {
        cmd.env_remove(name);
    }
    cmd.env("BIND_ADDR", "127.0.0.1:0")
        .envs(envs.iter().copied());
    cmd
}

pub(crate) struct Quickstart {
    child: Child,
    pub(crate) lines: Vec<String>,
    pub(crate) url: String,
    /// Its stdout after `listening on`, line by line.
    rest: Option<mpsc::Receiver<String>>,
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the quickstart and read its stdout up to `listening on http://ADDR`.
pub(crate) fn start(envs: &[(&str, &str)]) -> Quickstart {
    let child = command(envs)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("quickstart starts");
    // From here on, Drop kills and reaps the child, even on a panic.
    let mut qs = Quickstart {
        child,
        lines: Vec::new(),
        url: String::new(),
        rest: None,
    };
    let stdout = qs.child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no `listening on` line; got {:#?}", qs.lines));
        if let Some(url) = line.strip_prefix("listening on ") {
            qs.url = url.to_owned();
            qs.rest = Some(rx);
            return qs;
        }
        qs.lines.push(line);
    }
}

/// A mock standing in for real Wix, with its own credentials, and the
/// quickstart pointed at it with `WIX_API_BASE_URL` plus `extra` settings.
pub(crate) async fn start_against_another_wix(extra: &[(&str, &str)]) -> (MockWix, Quickstart) {
    let wix = another_wix().await;
    let qs = start_against(&wix, extra);
    (wix, qs)
}

/// A mock standing in for real Wix, with its own credentials.
async fn another_wix() -> MockWix {
    MockWix::builder()
        .app_id("real-app")
        .app_secret("real-secret")
        .start()
        .await
        .unwrap()
}

/// The quickstart pointed at `wix` with `WIX_API_BASE_URL`, plus `extra`.
fn start_against(wix: &MockWix, extra: &[(&str, &str)]) -> Quickstart {
    let mut envs = vec![
        ("WIX_API_BASE_URL", wix.base_url()),
        ("WIX_APP_ID", "real-app"),
        ("WIX_APP_SECRET", "real-secret"),
    ];
    envs.extend_from_slice(extra);
    start(&envs)
}

struct Curl {
    post: bool,
    url: String,
    authorization: Option<String>,
    /// `--data-binary '…'`.
    body: Option<String>,
    expect: u16,
}

fn parse_curl(line: &str) -> Option<Curl> {
    let rest = line.trim().strip_prefix("curl -s ")?;
    let (post, rest) = match rest.strip_prefix("-X POST ") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let (command, expect) = rest.split_once("# expect ")?;
    // A URL with a query is quoted for the shell.
    let url = command
        .split_whitespace()
        .next()?
        .trim_matches('\'')
        .to_owned();
    let authorization = command
        .split_once("-H 'Authorization: ")
        .and_then(|(_, h)| h.split_once('\''))
        .map(|(value, _)| value.to_owned());
    let body = command
        .split_once("--data-binary '")
        .and_then(|(_, b)| b.split_once('\''))
        .map(|(value, _)| value.to_owned());
    Some(Curl {
        post,
        url,
        authorization,
        body,
        expect: expect.trim().parse().ok()?,
    })
}

/// `POST url` with a raw body (a webhook).
async fn post_body(url: &str, data: &str) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new()
        .post(url)
        .body(data.to_owned())
        .send()
        .await
        .expect("quickstart answers");
    let status = res.status().as_u16();
    let body = res.bytes().await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

async fn get(url: &str, authorization: Option<&str>) -> (u16, serde_json::Value) {
    send(reqwest::Method::GET, url, authorization).await
}

async fn send(
    method: reqwest::Method,
    url: &str,
    authorization: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    let res = req.send().await.expect("quickstart answers");
    let status = res.status().as_u16();
    let body = res.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn the_printed_curl_commands_work_as_printed() {
    let qs = start(&[]);
    let curls: Vec<Curl> = qs.lines.iter().filter_map(|l| parse_curl(l)).collect();
    assert!(curls.len() >= 10, "{:#?}", qs.lines);
    for curl in &curls {
        assert!(
            curl.url.starts_with(&qs.url),
            "{} under {}",
            curl.url,
            qs.url
        );
        let method = if curl.post {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let (status, body) = match &curl.body {
            Some(data) => post_body(&curl.url, data).await,
            None => send(method, &curl.url, curl.authorization.as_deref()).await,
        };
        assert_eq!(status, curl.expect, "{} -> {body}", curl.url);
        if curl.url.ends_with("/api/whoami") && status == 200 {
            assert_eq!(body["subjectType"], "VISITOR");
            assert_eq!(body["instanceId"], "demo-instance");
            assert!(body["subjectId"].is_string());
        }
        if curl.url.ends_with("instance") && status == 200 {
            // The premium demo caller is the owner of another site.
            let want = if curl.url.contains("/api/premium/") {
                "demo-premium-instance"
            } else {
                "demo-instance"
            };
            assert_eq!(body["instance"]["instance"]["instanceId"], want);
            assert_eq!(body["caller"]["instanceId"], want);
        }
        if status == 403 && curl.url.contains("/api/premium/") {
            assert_eq!(body["code"], "plan_required", "a free site's owner");
        }
        if curl.url.ends_with("/v1/calculate-additional-fees") {
            // 2 units and 1 unit of handling at 1.50, in the call's currency.
            assert_eq!(body["currency"], "EUR", "{body}");
            let prices: Vec<&str> = body["additionalFees"]
                .as_array()
                .unwrap()
                .iter()
                .map(|fee| fee["price"].as_str().unwrap())
                .collect();
            assert_eq!(prices, ["3.00", "1.50"]);
        }
    }
    // A free and a premium caller on the premium route, and a dashboard
    // page's `?instance=` credential.
    let premium: Vec<u16> = curls
        .iter()
        .filter(|c| c.url.contains("/api/premium/"))
        .map(|c| c.expect)
        .collect();
    assert_eq!(premium, [403, 200], "{:#?}", qs.lines);
    assert!(
        curls
            .iter()
            .any(|c| c.url.contains("?instance=") && c.authorization.is_none() && c.expect == 200),
        "{:#?}",
        qs.lines
    );
    // A signed webhook is accepted.
    assert!(
        curls
            .iter()
            .any(|c| c.url.ends_with("/webhooks") && c.body.is_some() && c.expect == 200),
        "{:#?}",
        qs.lines
    );
    // A signed Additional Fees call is answered.
    assert!(
        curls
            .iter()
            .any(|c| c.url.ends_with("/v1/calculate-additional-fees") && c.expect == 200),
        "{:#?}",
        qs.lines
    );
    // The escalation attempt is a fixed problem document.
    let escalate = curls
        .iter()
        .find(|c| c.post && c.body.is_none())
        .expect("an escalation curl");
    let (_, body) = send(
        reqwest::Method::POST,
        &escalate.url,
        escalate.authorization.as_deref(),
    )
    .await;
    assert_eq!(body["code"], "operation_not_declared", "{body}");
    // Metrics moved.
    let metrics = reqwest::get(format!("{}/metrics", qs.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("wix_elevate_requests_total"), "{metrics}");
    assert!(metrics.contains("wix_elevate_wix_calls_total"), "{metrics}");
    // Routes not listed but in the contract.
    let (status, _) = get(&format!("{}/healthz", qs.url), None).await;
    assert_eq!(status, 200);
    // A browser preflight carries no token and must succeed.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/api/instance", qs.url))
        .header("origin", "https://example.wixsite.com")
        .header("access-control-request-method", "GET")
        // What `fetchWithAuth` sends on a multilingual site.
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-wix-linguist,x-wix-consistent",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in [
        "authorization",
        "content-type",
        "x-wix-linguist",
        "x-wix-consistent",
    ] {
        assert!(allowed.contains(header), "{header} not in {allowed}");
    }
    // Page code can read why it was refused and when to retry.
    let answer = reqwest::Client::new()
        .get(format!("{}/api/whoami", qs.url))
        .header("origin", "https://example.wixsite.com")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let exposed = answer.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in ["retry-after", "www-authenticate"] {
        assert!(exposed.contains(header), "{header} not in {exposed}");
    }
}

#[tokio::test]
async fn it_runs_against_another_wix_given_credentials() {
    let (wix, qs) = start_against_another_wix(&[
        ("WIX_HTTP_TIMEOUT_MS", "2000"),
        ("WIX_TOKEN_INFO_TTL_SECS", "30"),
    ])
    .await;
    assert!(
        !qs.lines.iter().any(|l| l.contains("curl")),
        "no demo tokens without the mock"
    );
    let member = wix.mint(CallerSpec::new(SubjectType::Member).instance("their-instance"));
    let visitor = wix.mint(CallerSpec::new(SubjectType::Visitor).instance("their-instance"));
    let (status, body) = get(&format!("{}/api/members/instance", qs.url), Some(&member)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance"]["instance"]["instanceId"], "their-instance");
    let (status, _) = get(&format!("{}/api/members/instance", qs.url), Some(&visitor)).await;
    assert_eq!(status, 403);
    // The escalation attempt never reaches Wix.
    let (status, body) = send(
        reqwest::Method::POST,
        &format!("{}/api/members/escalate", qs.url),
        Some(&member),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "operation_not_declared");
    assert_eq!(wix.calls(wix_elevate::test_util::MockEndpoint::Other), 0);
    assert_eq!(
        wix.calls(wix_elevate::test_util::MockEndpoint::GetAppInstance),
        1
    );
}

#[tokio::test]
async fn the_resilience_knobs_apply() {
    let (wix, qs) = start_against_another_wix(&[
        ("WIX_DEADLINE_MS", "300"),
        ("WIX_BREAKER_COOLDOWN_MS", "60000"),
        ("RATE_LIMIT_PER_CALLER_PER_MIN", "2"),
    ])
    .await;
    // The per-caller limit on /api/ routes.
    let member = wix.mint(CallerSpec::new(SubjectType::Member));
    for _ in 0..2 {
        assert_eq!(
            get(&format!("{}/api/whoami", qs.url), Some(&member))
                .await
                .0,
            200
        );
    }
    let (status, body) = get(&format!("{}/api/whoami", qs.url), Some(&member)).await;
    assert_eq!(status, 429, "{body}");
    // The deadline: a hanging Wix answers 504 within it.
    wix.fail(
        wix_elevate::test_util::MockEndpoint::TokenInfo,
        wix_elevate::test_util::Fault::Hang,
    );
    let started = std::time::Instant::now();
    let (status, _) = get(
        &format!("{}/api/whoami", qs.url),
        Some(&wix.mint(CallerSpec::new(SubjectType::Member))),
    )
    .await;
    assert_eq!(status, 504);
    assert!(started.elapsed() < Duration::from_secs(3));
    // The breaker: after repeated failures, 503 at once for the cool-down.
    wix.fail(
        wix_elevate::test_util::MockEndpoint::TokenInfo,
        wix_elevate::test_util::Fault::Status(503),
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            get(
                &format!("{}/api/whoami", qs.url),
                Some(&wix.mint(CallerSpec::new(SubjectType::Member))),
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    // Readiness is not Wix's health: every replica shares the outage, and
    // failing them all would drop the ones still serving cached callers.
    let (status, body) = get(&format!("{}/readyz", qs.url), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["circuits"]["token_info"], "open", "{body}");
}

/// A client that sends half its headers and then nothing.
async fn stalled_client(url: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = url.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn a_stalled_client_is_dropped_and_cannot_hold_up_shutdown() {
    use tokio::io::AsyncReadExt;
    let mut qs = start(&[
        ("HEADER_READ_TIMEOUT_MS", "500"),
        ("SHUTDOWN_DEADLINE_MS", "1000"),
    ]);
    // The header-read timeout closes a connection that never finishes.
    let mut stalled = stalled_client(&qs.url).await;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf))
        .await
        .expect("the server closed the stalled connection");
    println!(
        "stalled connection closed after {:?} ({read:?})",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // Another one, then SIGTERM: the process exits within the deadline.
    let _held = stalled_client(&qs.url).await;
    let started = std::time::Instant::now();
    send_signal(&qs.child, "-TERM");
    let exit = qs.child.wait().unwrap();
    let took = started.elapsed();
    println!("exited {took:?} after SIGTERM with a stalled client connected");
    assert!(exit.success(), "{exit:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn a_wix_url_without_credentials_is_a_clear_error() {
    for (envs, missing) in [
        (
            vec![("WIX_API_BASE_URL", "http://127.0.0.1:9")],
            "WIX_APP_ID",
        ),
        (
            vec![
                ("WIX_API_BASE_URL", "http://127.0.0.1:9"),
                ("WIX_APP_ID", "a"),
            ],
            "WIX_APP_SECRET",
        ),
        (vec![("WIX_HTTP_TIMEOUT_MS", "soon")], "WIX_HTTP_TIMEOUT_MS"),
    ] {
        let out = command(&envs).output().expect("runs");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(missing), "{stderr}");
    }
}

#[tokio::test]
async fn it_names_its_wix_answers_readiness_and_stops_on_sigterm() {
    let mut qs = start(&[("RUST_LOG", "info")]);
    assert!(
        qs.lines
            .iter()
            .any(|l| l.starts_with("Wix API base URL: http://127.0.0.1:")),
        "{:#?}",
        qs.lines
    );
    let (status, body) = get(&format!("{}/readyz", qs.url), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["circuits"]["token_info"], "closed");
    // An audited refusal, so there is a log line to look at.
    let member = qs
        .lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("MEMBER "))
        .expect("a demo member token")
        .trim()
        .to_owned();
    let refused = reqwest::Client::new()
        .post(format!("{}/api/members/escalate", qs.url))
        .header("authorization", member)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // What a container platform sends on a deploy.
    send_signal(&qs.child, "-TERM");
    let exit = qs.child.wait().unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");
    // Everything it printed after `listening on`, audit lines included:
    // plain text, since its stdout is not a terminal.
    let rest: Vec<String> = qs.rest.take().unwrap().iter().collect();
    assert!(rest.iter().any(|l| l == "shutting down"), "{rest:#?}");
    let all = qs.lines.iter().chain(&rest);
    assert!(all.clone().any(|l| l.contains("INFO")), "logs were printed");
    assert!(
        !all.clone().any(|l| l.contains('\u{1b}')),
        "no ANSI escapes"
    );
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn with_redis_url_two_quickstarts_are_one_fleet() {
    let Some(redis) = crate::support::Redis::start() else {
        return;
    };
    two_quickstarts_are_one_fleet(&redis.url(), &redis.url()).await;
}

/// The same on a Redis Cluster, each quickstart given another node.
#[cfg(feature = "redis")]
#[tokio::test]
async fn on_a_redis_cluster_two_quickstarts_are_one_fleet() {
    let Some(cluster) = crate::support::redis_cluster::RedisCluster::start() else {
        return;
    };
    two_quickstarts_are_one_fleet(&cluster.nodes[0].url(), &cluster.nodes[1].url()).await;
}

/// Two quickstarts on `REDIS_URL`s `first` and `second`: one caller's
/// identity and instance cost one Wix call each for both, and an
/// `AppRemoved` one of them takes makes both refuse the revoked caller.
#[cfg(feature = "redis")]
async fn two_quickstarts_are_one_fleet(first: &str, second: &str) {
    use wix_elevate::test_util::{MockWebhook, WEBHOOK_PUBLIC_KEY};
    let wix = another_wix().await;
    let key = ("WIX_WEBHOOK_PUBLIC_KEY", WEBHOOK_PUBLIC_KEY);
    let (one, two) = (
        start_against(&wix, &[("REDIS_URL", first), key]),
        start_against(&wix, &[("REDIS_URL", second), key]),
    );
    assert!(
        one.lines
            .iter()
            .any(|l| l == &format!("fleet mode: Redis at {first}")),
        "{:#?}",
        one.lines
    );
    let token = wix.mint(CallerSpec::new(SubjectType::Member).instance("fleet-inst"));
    for qs in [&one, &two, &one, &two] {
        let (status, body) = get(&format!("{}/api/instance", qs.url), Some(&token)).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        wix.token_info_calls_for(&token),
        1,
        "one Token Info call for both"
    );
    assert_eq!(
        wix.access_token_calls_for("fleet-inst"),
        1,
        "one app token for both"
    );
    // The app is removed from the site: the first takes the webhook, and
    // both refuse the revoked caller they had cached.
    wix.revoke(&token);
    let removed = MockWebhook::app_removed("fleet-inst").sign();
    let (status, body) = post_body(&format!("{}/webhooks", one.url), &removed).await;
    assert_eq!(status, 200, "{body}");
    for qs in [&one, &two] {
        let (status, body) = get(&format!("{}/api/whoami", qs.url), Some(&token)).await;
        assert_eq!(status, 401, "{body}");
    }
}

/// `REDIS_REQUIRED=1`: the quickstart takes itself out of rotation
/// (`/readyz` 503, the cause in its body) while Redis cannot give the
/// fleet's guarantees, and comes back once it can; without it, a degraded
/// fleet still serves and stays ready.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_required_fleet_makes_readiness_follow_redis() {
    let Some(mut redis) = crate::support::Redis::start() else {
        return;
    };
    let wix = another_wix().await;
    let url = redis.url();
    let required = start_against(&wix, &[("REDIS_URL", &url), ("REDIS_REQUIRED", "1")]);
    let optional = start_against(&wix, &[("REDIS_URL", &url)]);
    let readiness = |qs: &Quickstart| {
        let url = format!("{}/readyz", qs.url);
        async move { get(&url, None).await }
    };
    /// Ask until `status` (Redis's state changes outside this process).
    async fn until<F: std::future::Future<Output = (u16, serde_json::Value)>>(
        status: u16,
        ask: impl Fn() -> F,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (now, body) = ask().await;
            if now == status {
                return body;
            }
            assert!(std::time::Instant::now() < deadline, "{now}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    until(200, || readiness(&required)).await;
    redis.kill();
    let body = until(503, || readiness(&required)).await;
    assert_eq!(body["fleet"]["up"], false, "{body}");
    assert!(
        body["fleet"]["cause"]
            .as_str()
            .is_some_and(|cause| cause.contains("could not be reached")),
        "{body}"
    );
    let (status, body) = readiness(&optional).await;
    assert_eq!(status, 200, "not required: still ready, {body}");
    // Still serving, alone.
    let token = wix.mint(CallerSpec::new(SubjectType::Member));
    assert_eq!(
        get(&format!("{}/api/whoami", required.url), Some(&token))
            .await
            .0,
        200
    );
    redis.restart();
    let body = until(200, || readiness(&required)).await;
    assert_eq!(body["fleet"]["up"], true, "{body}");
}

/// On SIGTERM the quickstart drains its webhook queue before it exits:
/// an `AppInstalled` whose handler is still reading the instance (the mock
/// holds Wix's answer) finishes and logs, instead of being dropped with the
/// process after Wix had its 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_waits_for_the_webhook_handlers() {
    use wix_elevate::test_util::{MockEndpoint, MockWebhook, WEBHOOK_PUBLIC_KEY};
    let wix = another_wix().await;
    let mut qs = start_against(
        &wix,
        &[
            ("WIX_WEBHOOK_PUBLIC_KEY", WEBHOOK_PUBLIC_KEY),
            ("RUST_LOG", "info"),
            ("SHUTDOWN_DEADLINE_MS", "10000"),
        ],
    );
    wix.hold(MockEndpoint::GetAppInstance);
    let installed = MockWebhook::app_installed("draining-inst").sign();
    let (status, body) = post_body(&format!("{}/webhooks", qs.url), &installed).await;
    assert_eq!(status, 200, "{body}");
    // The handler is at Wix when the platform says stop.
    wix.wait_for_calls(MockEndpoint::GetAppInstance, 1).await;
    send_signal(&qs.child, "-TERM");
    let stopping = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        qs.child.try_wait().unwrap().is_none(),
        "exited with a handler still running"
    );
    wix.release(MockEndpoint::GetAppInstance);
    // (This test's runtime has a second thread for the mock meanwhile.)
    let exit = qs.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let rest: Vec<String> = qs.rest.take().unwrap().iter().collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("installed") && l.contains("draining-inst")),
        "{rest:#?}"
    );
    println!(
        "exited {:?} after SIGTERM, once its webhook handler finished",
        stopping.elapsed()
    );
}

/// A `redis-server`, another mock Wix, and two quickstarts on both with
/// `extra` settings; `None` without `redis-server` (said loudly).
#[cfg(feature = "redis")]
async fn two_on_one_redis(
    extra: &[(&str, &str)],
) -> Option<(crate::support::Redis, MockWix, [Quickstart; 2])> {
    let redis = crate::support::Redis::start()?;
    let wix = another_wix().await;
    let url = redis.url();
    let mut envs = vec![("REDIS_URL", url.as_str())];
    envs.extend_from_slice(extra);
    let replicas = [start_against(&wix, &envs), start_against(&wix, &envs)];
    Some((redis, wix, replicas))
}

/// The first line either quickstart prints after `listening on` that
/// `wanted` accepts, and which of them printed it (within 20 s).
#[cfg(feature = "redis")]
fn first_line_of(qs: &[&Quickstart], wanted: impl Fn(&str) -> bool) -> (usize, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        for (i, q) in qs.iter().enumerate() {
            let rest = q.rest.as_ref().expect("listening");
            while let Ok(line) = rest.recv_timeout(Duration::from_millis(10)) {
                if wanted(&line) {
                    return (i, line);
                }
            }
        }
        assert!(std::time::Instant::now() < deadline, "no such line");
    }
}

/// Two quickstarts on one Redis: an `AppInstalled` is acknowledged, its
/// handler starts reading the instance (Wix holds the answer) and the
/// quickstart running it is killed (`SIGKILL`); the other takes the event
/// over and reads the instance. Before, the event died with the process.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_installed_survives_the_death_of_the_replica_handling_it() {
    use wix_elevate::test_util::{MockEndpoint, MockWebhook, WEBHOOK_PUBLIC_KEY};
    let Some((_redis, wix, mut replicas)) = two_on_one_redis(&[
        ("WIX_WEBHOOK_PUBLIC_KEY", WEBHOOK_PUBLIC_KEY),
        ("WEBHOOK_HANDLER_DEADLINE_MS", "1000"),
        ("RUST_LOG", "info"),
    ])
    .await
    else {
        return;
    };
    wix.hold(MockEndpoint::GetAppInstance);
    let installed = MockWebhook::app_installed("survivor-inst").sign();
    let (status, body) = post_body(&format!("{}/webhooks", replicas[0].url), &installed).await;
    assert_eq!(status, 200, "{body}");
    wix.wait_for_calls(MockEndpoint::GetAppInstance, 1).await;
    let (running, _) = first_line_of(&[&replicas[0], &replicas[1]], |l| {
        l.contains("webhook") && l.contains("survivor-inst")
    });
    let died = std::time::Instant::now();
    send_signal(&replicas[running].child, "-KILL");
    let _ = replicas[running].child.wait();
    wix.release(MockEndpoint::GetAppInstance);
    let other = 1 - running;
    let (_, line) = first_line_of(&[&replicas[other]], |l| {
        l.contains("installed") && l.contains("survivor-inst") && l.contains("app_name")
    });
    println!(
        "AppInstalled read by the other quickstart {:?} after the one handling it was killed: {line}",
        died.elapsed()
    );
    assert_eq!(wix.calls(MockEndpoint::GetAppInstance), 2);
}

/// Two quickstarts on one Redis run the instance job every second: each
/// instance a caller proved is read once per period, by one of them.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_job_runs_once_per_period_for_the_fleet() {
    let Some((_redis, wix, replicas)) =
        two_on_one_redis(&[("JOB_PERIOD_SECS", "1"), ("RUST_LOG", "info")]).await
    else {
        return;
    };
    let member = wix.mint(CallerSpec::new(SubjectType::Member).instance("job-inst"));
    let (status, body) = get(&format!("{}/api/whoami", replicas[0].url), Some(&member)).await;
    assert_eq!(status, 200, "{body}");
    let period_of = |line: &str| -> u64 {
        let at = line.find("period=").expect("a period") + "period=".len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut runs: std::collections::HashMap<u64, Vec<usize>> = Default::default();
    let first = loop {
        let (replica, line) = first_line_of(&[&replicas[0], &replicas[1]], |l| {
            l.contains("job read the instance") && l.contains("job-inst")
        });
        runs.entry(period_of(&line)).or_default().push(replica);
        let first = *runs.keys().min().unwrap();
        if runs.keys().any(|p| *p >= first + 4) {
            break first;
        }
    };
    for period in first + 1..=first + 3 {
        assert_eq!(runs[&period].len(), 1, "period {period}: {runs:?}");
    }
}

#[tokio::test]
async fn each_route_for_a_free_a_premium_and_a_business_caller() {
    let (wix, qs) = start_against_another_wix(&[("WIX_PREMIUM_PLANS", "premium, business")]).await;
    let routes = [
        "/api/whoami",
        "/api/instance",
        "/api/members/instance",
        "/api/dashboard/instance",
        "/api/premium/instance",
    ];
    let mut table = Vec::new();
    for (name, plan) in [
        ("free", None),
        ("premium", Some("premium")),
        ("business", Some("business")),
    ] {
        for subject in [SubjectType::Member, SubjectType::User] {
            let spec = CallerSpec::new(subject).instance(format!("site-{name}"));
            let token = wix.mint(match plan {
                Some(plan) => spec.plan(plan),
                None => spec,
            });
            let mut row = Vec::new();
            for route in routes {
                let (status, body) = get(&format!("{}{route}", qs.url), Some(&token)).await;
                row.push(match body["code"].as_str() {
                    Some(code) => format!("{status} {code}"),
                    None => status.to_string(),
                });
            }
            println!("{name:>8} {:<6} {row:?}", subject.as_str());
            table.push((name, subject, row));
        }
    }
    let premium_route = |name: &str, subject| {
        table
            .iter()
            .find(|(n, s, _)| *n == name && *s == subject)
            .map(|(_, _, row)| row[4].clone())
            .unwrap()
    };
    assert_eq!(
        premium_route("free", SubjectType::User),
        "403 plan_required"
    );
    assert_eq!(premium_route("premium", SubjectType::User), "200");
    assert_eq!(premium_route("business", SubjectType::User), "200");
    assert_eq!(
        premium_route("business", SubjectType::Member),
        "403 forbidden"
    );
    // Plans gate only the premium route.
    for (_, subject, row) in &table {
        let want = if *subject == SubjectType::User {
            ["200", "200", "403 forbidden", "200"]
        } else {
            ["200", "200", "200", "403 forbidden"]
        };
        assert_eq!(row[..4], want, "{subject:?}");
    }
}

#[tokio::test]
async fn an_app_installed_webhook_reads_the_instance_as_the_app_and_logs_its_name() {
    let mut qs = start(&[("RUST_LOG", "info")]);
    let installed = wix_elevate::test_util::MockWebhook::app_installed("demo-instance").sign();
    let (status, body) = post_body(&format!("{}/webhooks", qs.url), &installed).await;
    assert_eq!((status, body["received"].as_str()), (200, Some("accepted")));
    let (status, body) = post_body(&format!("{}/webhooks", qs.url), "not a webhook").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("not_a_webhook"))
    );
    let rest = qs.rest.take().unwrap();
    let line = loop {
        let line = rest
            .recv_timeout(Duration::from_secs(20))
            .expect("an `installed` line");
        if line.contains("installed") && line.contains("app_name") {
            break line;
        }
    };
    println!("{line}");
    assert!(line.contains("instance_id=\"demo-instance\""), "{line}");
    assert!(
        !line.contains(&installed[..40]),
        "the webhook's token is not logged"
    );
}

#[tokio::test]
async fn the_additional_fees_plugin_reads_the_site_once_per_instance_and_answers_in_time_when_wix_hangs()
 {
    use wix_elevate::test_util::{Fault, MockEndpoint, MockServicePlugin, WEBHOOK_PUBLIC_KEY};
    let (wix, qs) =
        start_against_another_wix(&[("WIX_WEBHOOK_PUBLIC_KEY", WEBHOOK_PUBLIC_KEY)]).await;
    let url = format!(
        "{}/plugins/additional-fees/v1/calculate-additional-fees",
        qs.url
    );
    let call = |instance: &str| {
        MockServicePlugin::additional_fees(
            instance,
            serde_json::json!([{"id": "a", "quantity": 3}]),
        )
        .app_id("real-app")
        .currency("GBP")
        .sign()
    };
    for _ in 0..3 {
        let (status, body) = post_body(&url, &call("shop-1")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["currency"], "GBP");
        assert_eq!(body["additionalFees"][0]["price"], "4.50");
    }
    assert_eq!(
        wix.access_token_calls_for("shop-1"),
        1,
        "one app token, then cached"
    );
    assert_eq!(wix.calls(MockEndpoint::GetAppInstance), 3);
    // A call for another app is refused before any Wix call.
    let foreign = MockServicePlugin::additional_fees("shop-1", serde_json::json!([]))
        .app_id("another-app")
        .sign();
    let (status, body) = post_body(&url, &foreign).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("plugin_invalid_claims"))
    );
    assert_eq!(wix.calls(MockEndpoint::GetAppInstance), 3);
    // Wix's API hangs: the plugin still answers within Wix's 3 s.
    wix.fail(MockEndpoint::GetAppInstance, Fault::Hang);
    let started = std::time::Instant::now();
    let (status, body) = post_body(&url, &call("shop-1")).await;
    let took = started.elapsed();
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("plugin_deadline_exceeded")),
        "{body}"
    );
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
}

/// A frozen replica neither stalls a forget nor serves what was forgotten
/// while it was frozen: two quickstarts on one Redis, the second stopped
/// with `SIGSTOP` (as a Lambda environment is frozen between invocations);
/// an `AppRemoved` on the first is acknowledged at once (503 after a second
/// before), and once the second resumes, the removed site's caller it had
/// cached is refused there too.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_frozen_replica_neither_stalls_a_forget_nor_serves_what_was_forgotten() {
    use wix_elevate::test_util::{MockWebhook, WEBHOOK_PUBLIC_KEY};
    let Some((_redis, wix, [one, two])) =
        two_on_one_redis(&[("WIX_WEBHOOK_PUBLIC_KEY", WEBHOOK_PUBLIC_KEY)]).await
    else {
        return;
    };
    let member = wix.mint(CallerSpec::new(SubjectType::Member).instance("frozen-inst"));
    for qs in [&one, &two] {
        assert_eq!(
            get(&format!("{}/api/whoami", qs.url), Some(&member))
                .await
                .0,
            200
        );
    }
    let signal = |name: &str| send_signal(&two.child, name);
    signal("-STOP");
    // Wix removes the app: the member's token is revoked, and the webhook
    // reaches the first replica while the second is frozen.
    wix.revoke(&member);
    let removed = MockWebhook::app_removed("frozen-inst").sign();
    let started = std::time::Instant::now();
    let (status, body) = post_body(&format!("{}/webhooks", one.url), &removed).await;
    let took = started.elapsed();
    signal("-CONT");
    assert_eq!(status, 200, "{body}");
    assert!(
        took < Duration::from_millis(1_000),
        "acknowledged in {took:?}"
    );
    println!("AppRemoved acknowledged in {took:?} with a replica frozen");
    // The resumed replica refuses the removed site's caller it had cached.
    let (status, body) = get(&format!("{}/api/whoami", two.url), Some(&member)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
}
