//! Every example and bench driver run end to end, with small settings,
//! in a test binary of its own (they are processes, some CPU-heavy, so
//! they do not share the machine with the timing-sensitive suites). The
//! quickstart, `examples/lambda` and `examples/otel` have suites of their
//! own (`integration::quickstart`, `lambda`, `integration::otel`), and the
//! `plugin_load` driver runs in `integration::plugins`.

#[path = "support/mod.rs"]
mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use support::example::example_binary;

/// The CPU-heavy drivers run one at a time: each measures what it does.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A running example, killed and reaped when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(name: &str, envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(example_binary(name))
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The lines up to `listening on http://ADDR`, and the URL.
    fn until_listening(&self) -> (Vec<String>, String) {
        let mut before = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no `listening on` line; got {before:#?}"));
            if let Some(url) = line.strip_prefix("listening on ") {
                return (before, url.to_owned());
            }
            before.push(line);
        }
    }

    /// Everything it prints until it exits, and whether it succeeded.
    fn finish(mut self) -> (Vec<String>, bool) {
        let status = self.child.wait().expect("the example exits");
        let lines = self.lines.try_iter().collect();
        (lines, status.success())
    }
}

async fn get(url: &str, authorization: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().get(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.expect("an answer").status().as_u16()
}

#[tokio::test]
async fn basic_serves_its_two_routes_as_printed() {
    let basic = Running::start("basic", &[("BIND_ADDR", "127.0.0.1:0")]);
    let (printed, url) = basic.until_listening();
    let curl = printed
        .iter()
        .find(|l| l.starts_with("curl"))
        .unwrap_or_else(|| panic!("{printed:?}"));
    let token = curl
        .split("Authorization: ")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a token in the curl line");
    assert!(
        curl.contains(&url),
        "the printed command names the real address"
    );
    assert_eq!(
        get(&format!("{url}/api/dashboard/instance"), Some(token)).await,
        200
    );
    assert_eq!(get(&format!("{url}/api/whoami"), Some(token)).await, 200);
    assert_eq!(get(&format!("{url}/api/whoami"), None).await, 401);
}

#[tokio::test]
async fn the_loopback_server_serves_the_three_compared_routes() {
    let token_file =
        std::env::temp_dir().join(format!("wix-elevate-loopback-{}", std::process::id()));
    let server = Running::start(
        "loopback_server",
        &[
            ("BIND_ADDR", "127.0.0.1:0"),
            ("TOKEN_FILE", token_file.to_str().unwrap()),
        ],
    );
    let (_, url) = server.until_listening();
    let token = std::fs::read_to_string(&token_file).expect("the token file");
    let _ = std::fs::remove_file(&token_file);
    assert_eq!(token.trim().len(), 1024, "a realistic 1 KiB token");
    for path in ["/plain", "/floor", "/elevated"] {
        assert_eq!(
            get(&format!("{url}{path}"), Some(token.trim())).await,
            200,
            "{path}"
        );
    }
}

#[test]
fn the_fault_load_driver_runs_every_phase_and_no_handler_runs_on_a_failure() {
    let _alone = HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let run = Running::start("fault_load", &[("PHASE_SECS", "1"), ("WORKERS", "2")]);
    let (lines, ok) = run.finish();
    assert!(ok, "{lines:#?}");
    for phase in [
        "healthy",
        "token-info 503",
        "token-info hangs",
        "create-token drops",
        "recovered",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(phase)),
            "{phase}: {lines:#?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("handler runs on failed authentications: 0 ")),
        "{lines:#?}"
    );
}

#[test]
fn the_fleet_driver_measures_both_fleets() {
    let Some(redis) = support::Redis::start() else {
        return;
    };
    let _alone = HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // A debug build beside other tests: Redis may take longer than
    // production's 50 ms, which would count as Redis being away.
    let run = Running::start(
        "fleet",
        &[
            ("REDIS_URL", &redis.url()),
            ("REDIS_TIMEOUT_MS", "500"),
            ("WEBHOOKS", "200"),
            ("WEBHOOK_RATE", "200"),
        ],
    );
    let (lines, ok) = run.finish();
    assert!(ok, "{lines:#?}");
    // One Token Info per caller and one token per instance for the whole
    // fleet, and nothing after a rolling restart.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("with Redis: burst (120, 12), after a rolling restart (0, 0)")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Redis commands: 0 for 100 warm requests")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("webhooks through the durable queue: 200 deliveries")),
        "{lines:#?}"
    );
}
