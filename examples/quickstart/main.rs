//! Run with: `cargo run --example quickstart`
//!
//! A demo Wix app backend behind wix-elevate. With no environment it starts
//! the mock Wix in-process, mints demo tokens for a visitor, a member and a
//! Wix user, prints curl commands that work as printed, and serves:
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /healthz` | anyone | 200 `ok` |
//! | `GET /readyz` | anyone | 200 while serving, 503 once shutting down (and, with `REDIS_REQUIRED=1`, while the fleet is degraded); JSON with the circuits to Wix and the fleet |
//! | `GET /api/whoami` | visitors, members, Wix users | the caller, no Wix API call |
//! | `GET /api/instance` | visitors, members, Wix users | the caller and Wix's `GET /apps/v1/instance`, called with the app token |
//! | `GET /api/members/instance` | members | same |
//! | `GET /api/dashboard/instance` | Wix users | same; the token may also come as `?instance=` (older dashboard pages) |
//! | `GET /api/premium/instance` | Wix users of sites on a plan in `WIX_PREMIUM_PLANS` | same; other plans: 403 `plan_required` |
//! | `POST /api/members/escalate` | members | tries `POST /members/v1/members`, which the route does not declare: 403, and Wix sees nothing |
//! | `POST /plugins/additional-fees/v1/calculate-additional-fees` | Wix (signed) | the Additional Fees service plugin, on the same key as webhooks: 1.50 handling per unit of each line item in the call's currency, after reading the site's instance with the app's identity; answers within 2.5 s even when Wix hangs |
//! | `POST /webhooks` | Wix (signed) | with `WIX_WEBHOOK_PUBLIC_KEY`, or always against the mock: verified webhooks; `AppRemoved`, `AppInstalled` and plan events forget the instance; on `AppInstalled` it reads the instance with the app's identity and logs the app name |
//! | `GET /metrics` | anyone | Prometheus text: requests, cache hits/misses/coalesced waits, Wix calls and latency |
//!
//! Each `/instance` route declares `GET /apps/v1/instance` and calls it
//! through [`WixApi`], which refuses anything a route did not declare and
//! audits every call (`RUST_LOG=info` shows target `wix_elevate::audit`).
//!
//! Environment:
//!
//! * `WIX_API_BASE_URL`: use this Wix instead of the mock; then
//!   `WIX_APP_ID` and `WIX_APP_SECRET` are required.
//! * `BIND_ADDR` (default `127.0.0.1:3000`).
//! * `WIX_HTTP_TIMEOUT_MS`: timeout of each Wix call (default 5000).
//! * `WIX_TOKEN_INFO_TTL_SECS`: identity cache TTL (default 60).
//! * `WIX_DEADLINE_MS`: overall deadline of one request's authentication,
//!   retries included (default 10000).
//! * `WIX_BREAKER_COOLDOWN_MS`: how long the circuit stays open after
//!   repeated Wix failures (default 5000).
//! * `RATE_LIMIT_PER_CALLER_PER_MIN`: per-caller limit on every `/api/`
//!   route (unset: no limit).
//! * `WIX_NEW_TOKENS_PER_SEC`: Token Info calls per second for never-seen
//!   tokens, in bursts of ten times as many (default 100).
//! * `HEADER_READ_TIMEOUT_MS`: how long a client may take to send its
//!   request headers (default 10000).
//! * `SHUTDOWN_DEADLINE_MS`: how long open connections, then webhook
//!   handlers, get after SIGTERM or Ctrl-C before the process exits anyway
//!   (default 10000).
//! * `WEBHOOK_HANDLER_DEADLINE_MS`: how long a webhook handler may run
//!   (default 30000); in fleet mode, a handler whose replica died is taken
//!   over by another this long (and a second) after it started.
//! * `JOB_PERIOD_SECS`: the period of the job that reads every installed
//!   instance with the app's identity, once per period for the whole fleet
//!   (default 3600).
//! * `WIX_WEBHOOK_PUBLIC_KEY`: the app's webhook public key (PEM, `\n`-escaped
//!   PEM, or base64); serves `POST /webhooks` and the Additional Fees plugin
//!   (Wix signs both with it). Against the mock, the
//!   mock's key is used.
//! * `WIX_PREMIUM_PLANS`: the product ids (comma separated) that
//!   `/api/premium/instance` admits (default `premium`).
//! * `REDIS_URL`: fleet mode: share identities, app tokens, rate limits and
//!   invalidations with every replica on this Redis or Valkey
//!   (`redis://[user:password@]host:port`, `rediss://` for TLS; one node of
//!   a Redis Cluster is enough). Unset: the replica works alone.
//! * `REDIS_REQUIRED=1`: with `REDIS_URL`, refuse to start unless Redis gives
//!   the fleet's guarantees, and answer `/readyz` 503 while it does not.
//! * `RUST_LOG`: tracing filter (default `info`).

mod routes;
mod serve;

use std::{
    env,
    error::Error,
    net::SocketAddr,
    num::NonZeroU32,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use metrics_exporter_prometheus::PrometheusBuilder;
use wix_elevate::{
    Elevator, SubjectType, WixGuards,
    test_util::{CallerSpec, MockWebhook, MockWix, WEBHOOK_PUBLIC_KEY},
    webhook::WebhookKeys,
};

/// A burst is ten seconds' worth of the new-token budget.
const TEN: NonZeroU32 = NonZeroU32::new(10).unwrap();

/// The quickstart's settings, all from the environment.
struct Settings {
    wix: Option<(String, String, String)>,
    bind: String,
    http_timeout: Duration,
    token_info_ttl: Duration,
    deadline: Duration,
    breaker_cooldown: Duration,
    new_tokens_per_sec: NonZeroU32,
    redis: Option<String>,
    redis_required: bool,
    per_caller_per_min: Option<NonZeroU32>,
    header_read_timeout: Duration,
    shutdown_deadline: Duration,
    webhook_deadline: Duration,
    job_period: Duration,
    premium_plans: Vec<String>,
    webhook_key: Option<String>,
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        let var = |name: &str| env::var(name).ok().filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: u64| match var(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name} must be a positive whole number, got {v:?}")),
        };
        let wix = match var("WIX_API_BASE_URL") {
            None => None,
            Some(url) => {
                let id = var("WIX_APP_ID")
                    .ok_or("WIX_API_BASE_URL is set, so WIX_APP_ID is required")?;
                let secret = var("WIX_APP_SECRET")
                    .ok_or("WIX_API_BASE_URL is set, so WIX_APP_SECRET is required")?;
                Some((url, id, secret))
            }
        };
        Ok(Settings {
            wix,
            bind: var("BIND_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into()),
            http_timeout: Duration::from_millis(number("WIX_HTTP_TIMEOUT_MS", 5000)?),
            token_info_ttl: Duration::from_secs(number("WIX_TOKEN_INFO_TTL_SECS", 60)?),
            deadline: Duration::from_millis(number("WIX_DEADLINE_MS", 10_000)?),
            breaker_cooldown: Duration::from_millis(number("WIX_BREAKER_COOLDOWN_MS", 5_000)?),
            // `number` refuses zero.
            new_tokens_per_sec: u32::try_from(number("WIX_NEW_TOKENS_PER_SEC", 100)?)
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or("WIX_NEW_TOKENS_PER_SEC is too large")?,
            redis: var("REDIS_URL"),
            redis_required: var("REDIS_REQUIRED").is_some_and(|v| v == "1"),
            webhook_key: var("WIX_WEBHOOK_PUBLIC_KEY"),
            premium_plans: var("WIX_PREMIUM_PLANS")
                .unwrap_or_else(|| "premium".into())
                .split(',')
                .map(str::trim)
                .filter(|plan| !plan.is_empty())
                .map(str::to_owned)
                .collect(),
            header_read_timeout: Duration::from_millis(number(
                "HEADER_READ_TIMEOUT_MS",
                u64::try_from(serve::HEADER_READ_TIMEOUT.as_millis()).unwrap_or(10_000),
            )?),
            shutdown_deadline: Duration::from_millis(number(
                "SHUTDOWN_DEADLINE_MS",
                u64::try_from(serve::SHUTDOWN_DEADLINE.as_millis()).unwrap_or(10_000),
            )?),
            webhook_deadline: Duration::from_millis(number("WEBHOOK_HANDLER_DEADLINE_MS", 30_000)?),
            job_period: Duration::from_secs(number("JOB_PERIOD_SECS", 3600)?),
            per_caller_per_min: match var("RATE_LIMIT_PER_CALLER_PER_MIN") {
                None => None,
                // `number` refuses zero.
                Some(_) => u32::try_from(number("RATE_LIMIT_PER_CALLER_PER_MIN", 0)?)
                    .ok()
                    .and_then(NonZeroU32::new)
                    .map(Some)
                    .ok_or("RATE_LIMIT_PER_CALLER_PER_MIN is too large")?,
            },
        })
    }
}

/// Print demo tokens and curl commands; each ends with the status it gets.
fn print_demo(wix: &MockWix, addr: SocketAddr, premium_plans: &[String]) {
    let mint = |subject| {
        wix.mint(
            CallerSpec::new(subject)
                .instance("demo-instance")
                .site_id("demo-site")
                .expires_in(Duration::from_secs(24 * 3600)),
        )
    };
    let (visitor, member, user) = (
        mint(SubjectType::Visitor),
        mint(SubjectType::Member),
        mint(SubjectType::User),
    );
    // The owner of another site, one on the first premium plan.
    let premium_plan = premium_plans.first().map_or("premium", String::as_str);
    let premium = wix.mint(
        CallerSpec::new(SubjectType::User)
            .instance("demo-premium-instance")
            .site_id("demo-premium-site")
            .plan(premium_plan)
            .expires_in(Duration::from_secs(24 * 3600)),
    );
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let base = format!("http://{host}");
    println!("mock Wix (app id {})", wix.app_id());
    println!("demo tokens (instance demo-instance, valid 24 h):");
    println!("  VISITOR {visitor}");
    println!("  MEMBER  {member}");
    println!("  USER    {user}");
    println!("demo token (instance demo-premium-instance, plan {premium_plan}, valid 24 h):");
    println!("  PREMIUM_USER {premium}");
    println!("try:");
    let curl = |path: &str, token: Option<&str>, expect: u16| match token {
        Some(token) => {
            println!("  curl -s {base}{path} -H 'Authorization: {token}'   # expect {expect}")
        }
        None => println!("  curl -s {base}{path}   # expect {expect}"),
    };
    let curl_post = |path: &str, token: &str, expect: u16| {
        println!("  curl -s -X POST {base}{path} -H 'Authorization: {token}'   # expect {expect}")
    };
    curl("/healthz", None, 200);
    curl("/api/whoami", Some(&visitor), 200);
    curl("/api/whoami", None, 401);
    curl("/api/instance", Some(&format!("Bearer {visitor}")), 200);
    curl("/api/members/instance", Some(&member), 200);
    curl("/api/members/instance", Some(&visitor), 403);
    curl("/api/dashboard/instance", Some(&user), 200);
    curl("/api/dashboard/instance", Some(&member), 403);
    println!("  curl -s '{base}/api/dashboard/instance?instance={user}'   # expect 200");
    curl("/api/premium/instance", Some(&user), 403);
    curl("/api/premium/instance", Some(&premium), 200);
    curl_post("/api/members/escalate", &member, 403);
    curl("/metrics", None, 200);
    // Wix removes the app from the demo site (a webhook signed with the
    // mock's key): the demo instance's callers are forgotten.
    let removed = MockWebhook::app_removed("demo-instance").sign();
    println!("  curl -s -X POST {base}/webhooks --data-binary '{removed}'   # expect 200");
    // Wix's checkout asks the Additional Fees plugin (a call signed with
    // the mock's key, valid 24 h): 1.50 per unit, in EUR.
    let fees = wix
        .service_plugin(
            "ECOM_ADDITIONAL_FEES",
            "demo-instance",
            serde_json::json!({"lineItems": [{"id": "li-1", "quantity": 2}, {"id": "li-2", "quantity": 1}]}),
        )
        .currency("EUR")
        .expires_in(Duration::from_secs(24 * 3600))
        .sign();
    println!(
        "  curl -s -X POST {base}{}/v1/calculate-additional-fees --data-binary '{fees}'   # expect 200",
        routes::ADDITIONAL_FEES_BASE
    );
}

async fn run() -> Result<(), Box<dyn Error>> {
    let settings = Settings::from_env()?;
    // Metric handles bind when the elevator and layers are built: install first.
    let metrics = PrometheusBuilder::new().install_recorder()?;
    serve::spawn_metrics_upkeep(metrics.clone(), serve::METRICS_UPKEEP);
    tracing_subscriber::fmt()
        // Colours only on a terminal: log collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let (mock, (base_url, app_id, app_secret)) = match settings.wix {
        Some(wix) => (None, wix),
        None => {
            let mock = MockWix::start().await?;
            let wix = (
                mock.base_url().to_owned(),
                mock.app_id().to_owned(),
                mock.app_secret().to_owned(),
            );
            (Some(mock), wix)
        }
    };
    let builder = Elevator::builder(app_id, app_secret);
    let builder = match &settings.redis {
        Some(url) => {
            println!(
                "fleet mode: Redis at {}",
                wix_elevate::RedisConfig::new(url.clone()).redacted_url()
            );
            let config = wix_elevate::RedisConfig::new(url.clone());
            builder.redis(if settings.redis_required {
                config.required()
            } else {
                config
            })
        }
        None => builder,
    };
    let elevator = builder
        .base_url(base_url)
        .http_timeout(settings.http_timeout)
        .token_info_ttl(settings.token_info_ttl)
        .auth_deadline(settings.deadline)
        .guards(WixGuards::default().breaker(5, settings.breaker_cooldown))
        .token_info_budget_for_new_tokens(
            settings.new_tokens_per_sec,
            settings.new_tokens_per_sec.saturating_mul(TEN),
        )
        .build()?;

    // Webhooks: the configured key, or the mock's when the mock is Wix.
    let webhook_key = match (&settings.webhook_key, &mock) {
        (Some(key), _) => Some(key.as_str()),
        (None, Some(_)) => Some(WEBHOOK_PUBLIC_KEY),
        (None, None) => None,
    };
    let signing_keys = match webhook_key {
        Some(key) => Some(
            WebhookKeys::new()
                .key(key)
                .map_err(|e| format!("WIX_WEBHOOK_PUBLIC_KEY: {e}"))?,
        ),
        None => None,
    };

    let listener = tokio::net::TcpListener::bind(&settings.bind)
        .await
        .map_err(|e| format!("cannot bind BIND_ADDR {}: {e}", settings.bind))?;
    let addr = listener.local_addr()?;
    println!("Wix API base URL: {}", elevator.base_url());
    if let Some(mock) = &mock {
        print_demo(mock, addr, &settings.premium_plans);
    }
    println!("listening on http://{addr}");
    let stopping = Arc::new(AtomicBool::new(false));
    let app = routes::app(
        &elevator,
        metrics,
        settings.per_caller_per_min,
        &settings.premium_plans,
        signing_keys,
        Some(settings.webhook_deadline),
        stopping.clone(),
    )?;
    // Every installed instance read once per period, by one replica of
    // the fleet.
    let _jobs = instance_job(&elevator, settings.job_period)?;
    let shutdown = async move {
        shutdown_signal().await;
        stopping.store(true, Ordering::Release);
    };
    serve::serve(
        listener,
        app.router,
        settings.header_read_timeout,
        settings.shutdown_deadline,
        shutdown,
    )
    .await?;
    // Webhook handlers queued or running here finish (without Redis, what
    // is still queued at exit is lost; in fleet mode another replica takes
    // over what this one has not finished).
    if let Some(webhooks) = app.webhooks
        && tokio::time::timeout(settings.shutdown_deadline, webhooks.drain())
            .await
            .is_err()
    {
        println!("shutdown deadline passed: webhook handlers still running were dropped");
    }
    Ok(())
}

/// The job that reads every installed instance with the app's identity,
/// once per `period` for the whole fleet.
fn instance_job(
    elevator: &Elevator,
    period: std::time::Duration,
) -> Result<wix_elevate::Jobs, wix_elevate::ConfigError> {
    let client = elevator
        .app_client("job:instance_read")
        .allow("GET /apps/v1/instance")
        .build()?;
    Ok(wix_elevate::Jobs::builder(elevator)
        .every(period, client, |run| async move {
            match run
                .api()
                .get("/apps/v1/instance")
                .await
                .and_then(|r| r.json::<serde_json::Value>())
            {
                Ok(answer) => tracing::info!(
                    instance_id = run.instance_id(),
                    period = run.period(),
                    app_name = answer["instance"]["appName"].as_str(),
                    "job read the instance"
                ),
                Err(error) => tracing::warn!(%error, instance_id = run.instance_id(), "job could not read the instance"),
            }
        })
        .start())
}

/// Ctrl-C, or SIGTERM (what container platforms send) on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    println!("shutting down");
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
