//! Run with: `bash benches/fault_load.sh` (it builds this and the quickstart
//! in release mode, then runs this).
//!
//! A fault-and-load run of the quickstart over loopback. This starts a mock
//! Wix in-process, runs the real quickstart binary against it
//! (`WIX_API_BASE_URL`), and drives it with 64 concurrent HTTP workers while
//! the mock goes through phases of faults. It reports, per phase, the
//! requests served and their statuses; then the Wix calls made, handler runs
//! on failed authentications (must be 0), and the quickstart's memory before
//! and after. Settings: `PHASE_SECS` (default 5), `WORKERS` (default 64).

use std::{
    collections::BTreeMap,
    env,
    error::Error,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, Fault, MockEndpoint, MockWix},
};

const WARM_CALLERS: usize = 200;
const INSTANCES: usize = 20;

struct Quickstart(Child);

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Quickstart {
    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

fn start_quickstart(wix: &MockWix) -> Result<(Quickstart, String), Box<dyn Error>> {
    let exe = env::current_exe()?;
    let binary: PathBuf = exe.with_file_name(format!("quickstart{}", env::consts::EXE_SUFFIX));
    let mut child = Command::new(&binary)
        .env("WIX_API_BASE_URL", wix.base_url())
        .env("WIX_APP_ID", wix.app_id())
        .env("WIX_APP_SECRET", wix.app_secret())
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("WIX_HTTP_TIMEOUT_MS", "500")
        .env("WIX_DEADLINE_MS", "1000")
        .env("WIX_BREAKER_COOLDOWN_MS", "1000")
        // Every tenth caller is new, by design of this run.
        .env("WIX_NEW_TOKENS_PER_SEC", "100000")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run {}: {e} (build it: cargo build --release --examples)",
                binary.display()
            )
        })?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let quickstart = Quickstart(child);
    for line in BufReader::new(stdout).lines() {
        if let Some(url) = line?.strip_prefix("listening on ") {
            return Ok((quickstart, url.to_owned()));
        }
    }
    Err("the quickstart exited before listening".into())
}

#[derive(Default)]
struct Tally {
    statuses: Mutex<BTreeMap<u16, u64>>,
    errors: AtomicU64,
}

impl Tally {
    fn take(&self) -> BTreeMap<u16, u64> {
        std::mem::take(&mut *self.statuses.lock().unwrap())
    }
}

/// One worker: request after request until `stop`; every tenth caller is
/// new (Token Info), every hundredth on a new instance (Create Access Token).
async fn worker(
    id: usize,
    url: String,
    wix: Arc<MockWix>,
    warm: Arc<Vec<String>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let token = if n.is_multiple_of(10) {
            let instance = if n.is_multiple_of(100) {
                format!("new-{id}-{n}")
            } else {
                format!("inst-{}", n % INSTANCES)
            };
            wix.mint(
                CallerSpec::new(SubjectType::Visitor)
                    .instance(instance)
                    .token_len(1024),
            )
        } else {
            warm[(id * 31 + n) % warm.len()].clone()
        };
        let path = if n.is_multiple_of(2) {
            "/api/whoami"
        } else {
            "/api/instance"
        };
        match http
            .get(format!("{url}{path}"))
            .header("authorization", token)
            .send()
            .await
        {
            Ok(res) => {
                let status = res.status().as_u16();
                let _ = res.bytes().await;
                *tally.statuses.lock().unwrap().entry(status).or_default() += 1;
            }
            Err(_) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// `name="value"` labels → the sum of a Prometheus counter's matching lines.
fn counter(metrics: &str, name: &str, labels: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let phase_secs: u64 = env::var("PHASE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let workers: usize = env::var("WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let wix = Arc::new(MockWix::start().await?);
    wix.set_latency(Duration::from_millis(2));
    let (quickstart, url) = start_quickstart(&wix)?;
    let warm: Arc<Vec<String>> = Arc::new(
        (0..WARM_CALLERS)
            .map(|i| {
                wix.mint(
                    CallerSpec::new(SubjectType::Visitor)
                        .instance(format!("inst-{}", i % INSTANCES))
                        .token_len(1024),
                )
            })
            .collect(),
    );
    for token in warm.iter() {
        reqwest::Client::new()
            .get(format!("{url}/api/whoami"))
            .header("authorization", token)
            .send()
            .await?;
    }
    let rss_before = quickstart.rss_kib();
    wix.reset_counts();

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..workers)
        .map(|id| {
            tokio::spawn(worker(
                id,
                url.clone(),
                wix.clone(),
                warm.clone(),
                tally.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let phases: [(&str, Option<(MockEndpoint, Fault)>); 5] = [
        ("healthy", None),
        (
            "token-info 503",
            Some((MockEndpoint::TokenInfo, Fault::Status(503))),
        ),
        (
            "token-info hangs",
            Some((MockEndpoint::TokenInfo, Fault::Hang)),
        ),
        (
            "create-token drops",
            Some((MockEndpoint::CreateAccessToken, Fault::Drop)),
        ),
        ("recovered", None),
    ];
    println!(
        "fault-and-load run: {workers} workers, {phase_secs} s per phase, 10% new callers, 1% new instances"
    );
    println!("{:<20} {:>9} {:>9}  statuses", "phase", "requests", "req/s");
    let mut served = 0;
    for (name, fault) in phases {
        wix.clear_faults();
        if let Some((endpoint, fault)) = fault {
            wix.fail(endpoint, fault);
        }
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(phase_secs)).await;
        let statuses = tally.take();
        let requests: u64 = statuses.values().sum();
        served += requests;
        let shown: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        println!(
            "{name:<20} {requests:>9} {:>9.0}  {}",
            requests as f64 / started.elapsed().as_secs_f64(),
            shown.join(", ")
        );
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    wix.clear_faults();
    let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let granted_instance = counter(
        &metrics,
        "wix_elevate_requests_total",
        &["route=\"instance\"", "outcome=\"granted\""],
    );
    // The /api/instance handler calls Wix's Get App Instance once per run.
    let instance_handler_runs = wix.calls(MockEndpoint::GetAppInstance);
    let rss_after = quickstart.rss_kib();

    println!(
        "requests served: {served} (transport errors: {})",
        tally.errors.load(Ordering::Relaxed)
    );
    println!(
        "Wix calls: token-info {}, create-access-token {}, get-app-instance {}",
        wix.calls(MockEndpoint::TokenInfo),
        wix.calls(MockEndpoint::CreateAccessToken),
        instance_handler_runs
    );
    println!(
        "handler runs on failed authentications: {} (/api/instance handler runs {instance_handler_runs} - granted {granted_instance})",
        instance_handler_runs.saturating_sub(granted_instance)
    );
    println!("quickstart RSS: {rss_before} KiB before, {rss_after} KiB after");
    if instance_handler_runs > granted_instance {
        return Err("a handler ran on a failed authentication".into());
    }
    Ok(())
}
