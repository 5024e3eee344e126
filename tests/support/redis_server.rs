//! A real `redis-server` per test, on a free loopback port, killed on drop.
//! Without `redis-server` on the machine the fleet tests say loudly that
//! they did not run; under `CI=true` that is a failure.

use std::{
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub(crate) struct Redis {
    child: Child,
    pub(crate) port: u16,
    _dir: TempDir,
}

/// A scratch directory for the server's files, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

impl Redis {
    /// A fresh server, or `None` (after saying so loudly) when there is no
    /// `redis-server`; under `CI=true` its absence fails the test.
    pub(crate) fn start() -> Option<Redis> {
        Self::start_with(&[])
    }

    /// A fresh server started with these extra arguments.
    pub(crate) fn start_with(args: &[&str]) -> Option<Redis> {
        let Some(binary) = find("redis-server") else {
            let message =
                "SKIPPED: the fleet-mode tests need redis-server (apt-get install -y redis-server)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("\n!!!!! {message} !!!!!\n");
            return None;
        };
        for _ in 0..5 {
            // A port the OS says is free; retried if another process takes
            // it before the server binds it.
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let dir = std::env::temp_dir()
                .join(format!("wix-elevate-redis-{port}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("scratch dir");
            let child = Command::new(&binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(args)
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            let mut redis = Redis {
                child,
                port,
                _dir: TempDir(dir),
            };
            if redis.wait_ready() {
                return Some(redis);
            }
            let _ = redis.child.kill();
        }
        panic!("redis-server did not start on a free port");
    }

    fn wait_ready(&mut self) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain client, for looking at what the fleet stored.
    pub(crate) fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("url")
    }

    fn signal(&self, signal: &str) {
        super::send_signal(&self.child, signal);
    }

    /// Freeze the server (it keeps its connections, answers nothing).
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kill it; `restart` brings a new, empty one up on the same port.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn restart(&mut self) {
        let binary = find("redis-server").expect("redis-server");
        self.child = Command::new(binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self._dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server restarts");
        assert!(self.wait_ready(), "redis-server came back");
    }

    /// Scripts the server has run so far (`EVALSHA` and `EVAL`): on the
    /// fleet's paths, one per round trip.
    pub(crate) async fn script_calls(&self) -> u64 {
        self.calls(|command| matches!(command, "evalsha" | "eval"))
            .await
    }

    /// Commands the server has processed so far (those run inside scripts
    /// included), but for the replicas' heartbeats (`PUBLISH` on their own
    /// clock, whatever the requests do) and `INFO` (these measurements).
    pub(crate) async fn commands(&self) -> u64 {
        self.calls(|command| !matches!(command, "publish" | "spublish" | "info"))
            .await
    }

    /// Calls of the commands `counted` keeps, by `INFO commandstats`.
    async fn calls(&self, counted: impl Fn(&str) -> bool) -> u64 {
        self.info("commandstats")
            .await
            .lines()
            .filter_map(|l| {
                let (command, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                counted(command).then_some(())?;
                stats
                    .split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// How many keys this server holds (`DBSIZE`).
    pub(crate) async fn keys(&self) -> u64 {
        let mut c = self
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        redis::cmd("DBSIZE").query_async(&mut c).await.unwrap()
    }

    /// One section of `INFO`.
    async fn info(&self, section: &str) -> String {
        let mut c = self
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        redis::cmd("INFO")
            .arg(section)
            .query_async(&mut c)
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // A paused server must be resumed to die promptly (one killed
        // already has nothing to resume).
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-CONT", &self.child.id().to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
