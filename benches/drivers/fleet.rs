//! Run with: `cargo run --release --example fleet`
//!
//! Three replicas of one app on one Redis, against a mock Wix with 20 ms of
//! latency, each replica served over HTTP on loopback; then the same three
//! without Redis. It prints, side by side:
//!
//! * Wix calls for 120 callers over 12 instances, every caller's requests
//!   spread over the replicas, with and without Redis;
//! * Wix calls for the same burst after a rolling restart;
//! * the latency of a local miss when Redis has the answer vs when Wix must
//!   be asked (p50 and p99 of 200 requests each);
//! * Redis commands per request on the warm path and on a local miss;
//! * webhooks through the fleet's durable queue: the acknowledgement's
//!   latency (p50, p99) at `WEBHOOK_RATE` deliveries a second (default
//!   1,000) for `WEBHOOKS` deliveries (default 10,000), over HTTP, and the
//!   Redis memory they leave once handled (their dedupe marks), per 10,000.
//!
//! Redis: `REDIS_URL`, else a `redis-server` it starts on a free port.

use std::{
    error::Error,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use wix_elevate::{
    ElevatedToken, Elevator, SubjectType,
    test_util::{CallerSpec, MockEndpoint, MockWix},
};

/// A new-token budget no burst of this driver reaches.
const HIGH: std::num::NonZeroU32 = std::num::NonZeroU32::new(10_000).unwrap();

/// One replica: its elevator and where it listens.
struct Replica {
    _elevator: Elevator,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn replica(wix: &MockWix, redis: Option<&str>) -> Result<Replica, Box<dyn Error>> {
    let builder = wix
        .elevator_builder()
        .token_info_budget_for_new_tokens(HIGH, HIGH);
    let elevator = match redis {
        Some(url) => builder.redis(wix_elevate::RedisConfig::new(url).timeout(redis_timeout())),
        None => builder,
    }
    .build()?;
    let app = Router::new().route(
        "/token",
        get(|token: ElevatedToken| async move { token.instance_id().to_owned() })
            .route_layer(elevator.layer().expose_app_token()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Replica {
        _elevator: elevator,
        addr,
        server,
    })
}

/// Production's 50 ms unless `REDIS_TIMEOUT_MS` says otherwise (a debug
/// build on a loaded machine needs more).
fn redis_timeout() -> Duration {
    std::env::var("REDIS_TIMEOUT_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_millis(50), Duration::from_millis)
}

async fn replicas(wix: &MockWix, redis: Option<&str>) -> Result<Vec<Replica>, Box<dyn Error>> {
    let mut out = Vec::new();
    for _ in 0..3 {
        out.push(replica(wix, redis).await?);
    }
    Ok(out)
}

/// Every caller once on every replica, all at once; all must be 200.
async fn burst(
    http: &reqwest::Client,
    replicas: &[Replica],
    callers: &[String],
) -> Result<(), Box<dyn Error>> {
    let mut requests = tokio::task::JoinSet::new();
    for (i, token) in callers.iter().enumerate() {
        for hop in 0..replicas.len() {
            let url = format!("http://{}/token", replicas[(i + hop) % replicas.len()].addr);
            let (http, token) = (http.clone(), token.clone());
            requests
                .spawn(async move { http.get(url).header("authorization", token).send().await });
        }
    }
    while let Some(answer) = requests.join_next().await {
        let status = answer??.status();
        if status != 200 {
            return Err(format!("a request answered {status}").into());
        }
    }
    Ok(())
}

fn calls(wix: &MockWix) -> (u64, u64) {
    (
        wix.calls(MockEndpoint::TokenInfo),
        wix.calls(MockEndpoint::CreateAccessToken),
    )
}

fn callers(wix: &MockWix, n: usize, prefix: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            wix.mint(
                CallerSpec::new(SubjectType::Member)
                    .instance(format!("{prefix}-{}", i % 12))
                    .token_len(1024),
            )
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A `redis-server` of our own, killed on drop.
struct OwnRedis(Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn own_redis() -> Result<(OwnRedis, String), Box<dyn Error>> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("no REDIS_URL and no redis-server to start ({e})"))?;
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > until {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((OwnRedis(child), format!("redis://127.0.0.1:{port}")))
}

/// Commands Redis has processed (those inside scripts included), but for
/// the replicas' heartbeats (`PUBLISH`, on their own clock) and `INFO`
/// (this measurement).
async fn commands(url: &str) -> Result<u64, Box<dyn Error>> {
    let mut c = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (command, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            if matches!(command, "publish" | "spublish" | "info") {
                return None;
            }
            stats
                .split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (_own, url) = match std::env::var("REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let (own, url) = own_redis()?;
            (Some(own), url)
        }
    };
    let http = reqwest::Client::new();

    // Wix calls, with and without Redis.
    let mut rows = Vec::new();
    for redis in [None, Some(url.as_str())] {
        let wix = MockWix::start().await?;
        wix.set_latency(Duration::from_millis(20));
        let tokens = callers(&wix, 120, "inst");
        let fleet = replicas(&wix, redis).await?;
        burst(&http, &fleet, &tokens).await?;
        let first = calls(&wix);
        drop(fleet);
        let fleet = replicas(&wix, redis).await?; // a rolling restart
        burst(&http, &fleet, &tokens).await?;
        let after = calls(&wix);
        rows.push((
            redis.is_some(),
            first,
            (after.0 - first.0, after.1 - first.1),
        ));
    }
    println!(
        "120 callers over 12 instances, each caller on all 3 replicas (Token Info, Create Access Token calls):"
    );
    for (with_redis, first, restart) in &rows {
        let what = if *with_redis {
            "with Redis"
        } else {
            "alone     "
        };
        println!("  {what}: burst {first:?}, after a rolling restart {restart:?} more");
    }

    // A local miss answered by Redis vs by Wix (20 ms).
    let wix = MockWix::start().await?;
    wix.set_latency(Duration::from_millis(20));
    let writer = replica(&wix, Some(&url)).await?;
    let tokens = callers(&wix, 200, "lat");
    burst(&http, std::slice::from_ref(&writer), &tokens).await?;
    let mut timings = Vec::new();
    for redis in [Some(url.as_str()), None] {
        let reader = replica(&wix, redis).await?;
        let mut samples = Vec::new();
        for token in &tokens {
            let started = Instant::now();
            let res = http
                .get(format!("http://{}/token", reader.addr))
                .header("authorization", token)
                .send()
                .await?;
            if res.status() != 200 {
                return Err(format!("answered {}", res.status()).into());
            }
            samples.push(started.elapsed());
        }
        samples.sort();
        timings.push((
            redis.is_some(),
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
        ));
    }
    println!(
        "a local miss (new replica, 200 known callers over 12 instances; over HTTP on loopback):"
    );
    for (from_redis, p50, p99) in timings {
        let what = if from_redis {
            "answered by Redis  "
        } else {
            "answered by Wix    "
        };
        println!("  {what}: p50 {p50:?}, p99 {p99:?}");
    }

    // Redis commands per request.
    let fresh = callers(&wix, 1, "rtt").remove(0);
    let reader = replica(&wix, Some(&url)).await?;
    let get = |token: &str| {
        http.get(format!("http://{}/token", reader.addr))
            .header("authorization", token.to_owned())
            .send()
    };
    let before = commands(&url).await?;
    get(&fresh).await?;
    let miss = commands(&url).await? - before;
    let before = commands(&url).await?;
    for _ in 0..100 {
        get(&fresh).await?;
    }
    let warm = commands(&url).await? - before;
    let other = replica(&wix, Some(&url)).await?;
    let before = commands(&url).await?;
    http.get(format!("http://{}/token", other.addr))
        .header("authorization", fresh.as_str())
        .send()
        .await?;
    let from_redis = commands(&url).await? - before;
    println!(
        "Redis commands: {warm} for 100 warm requests; {from_redis} for a local miss Redis answers; {miss} for one Wix must answer (identity and app token)"
    );
    drop(writer);

    webhooks(&http, &url).await
}

/// Domain events (no instance to forget: the queue alone is measured),
/// signed ahead of time, sent at a steady rate to one replica's
/// `/webhooks`; then, once handled, Redis's memory before and after.
async fn webhooks(http: &reqwest::Client, url: &str) -> Result<(), Box<dyn Error>> {
    use wix_elevate::{
        test_util::{MockWebhook, WEBHOOK_PUBLIC_KEY},
        webhook::{WebhookEndpoint, WebhookKeys, WebhookVerifier},
    };
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    let (count, rate) = (setting("WEBHOOKS", 10_000), setting("WEBHOOK_RATE", 1_000));
    let wix = MockWix::start().await?;
    let elevator = wix
        .elevator_builder()
        .redis(wix_elevate::RedisConfig::new(url).timeout(redis_timeout()))
        .build()?;
    let endpoint = WebhookEndpoint::builder(
        &elevator,
        WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY)?),
    )
    .queue_capacity(usize::try_from(count)?)
    .build();
    let app = Router::new().route("/webhooks", axum::routing::post_service(endpoint.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let target = format!("http://{}/webhooks", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let bodies: Vec<String> = (0..count)
        .map(|i| {
            MockWebhook::new(
                "wix.stores.v1.product_created",
                format!("inst-{}", i % 12),
                serde_json::json!({"entityId": format!("product-{i}")}),
            )
            .sign()
        })
        .collect();
    let memory_before = used_memory(url).await?;
    let mut sends = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / u32::try_from(rate)?);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for body in bodies {
        tick.tick().await;
        let (http, target) = (http.clone(), target.clone());
        sends.spawn(async move {
            let sent = Instant::now();
            let status = http
                .post(target)
                .body(body)
                .send()
                .await
                .map(|r| r.status());
            (status, sent.elapsed())
        });
    }
    let mut latencies = Vec::new();
    while let Some(sent) = sends.join_next().await {
        let (status, took) = sent?;
        if status? != 200 {
            return Err("a delivery was not acknowledged".into());
        }
        latencies.push(took);
    }
    let offered = count as f64 / started.elapsed().as_secs_f64();
    endpoint.handled().await;
    let per_10k = (used_memory(url).await?.saturating_sub(memory_before)) * 10_000 / count;
    latencies.sort();
    println!(
        "webhooks through the durable queue: {count} deliveries at {offered:.0}/s: acknowledged p50 {:?}, p99 {:?}; Redis memory left once handled: {} KiB per 10,000",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        per_10k / 1024
    );
    server.abort();
    Ok(())
}

/// Redis's `used_memory`, in bytes.
async fn used_memory(url: &str) -> Result<u64, Box<dyn Error>> {
    let mut c = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0))
}
