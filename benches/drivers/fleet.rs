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
//! * Redis commands per request on the warm path and on a local miss.
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
    // Production's 50 ms unless `REDIS_TIMEOUT_MS` says otherwise (a
    // debug build on a loaded machine needs more).
    let timeout = std::env::var("REDIS_TIMEOUT_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_millis(50), Duration::from_millis);
    let elevator = match redis {
        Some(url) => builder.redis(wix_elevate::RedisConfig::new(url).timeout(timeout)),
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
    Ok(())
}
