//! [`Jobs`]: work per installed instance on a schedule (a sync every
//! hour, say), run once per period for each instance by one replica of the
//! fleet, through an [`AppClient`] like any other work the app does on its
//! own behalf.

use std::{
    collections::HashSet,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::{sync::Semaphore, time::Instant};

use crate::{AppClient, Elevator, WixApi, isolated::run_isolated};

type RunJob = Arc<dyn Fn(JobRun) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The default deadline of one run: a minute.
pub const DEFAULT_JOB_DEADLINE: Duration = Duration::from_secs(60);

/// How often, at most, a job looks for instances it has not run for in
/// the current period (new installs): a minute, less for short periods.
const LOOK_AT_MOST_EVERY: Duration = Duration::from_secs(60);

/// Scheduled jobs, running until dropped. Each job runs once per period
/// for every instance in [`Elevator::installed_instances`]: in fleet mode
/// one replica of the fleet takes each (job, instance, period) with a lease
/// in Redis (while Redis is away no replica runs it, rather than all of
/// them; it runs in the next period); without Redis, this process runs it.
/// A run calls Wix through the job's [`AppClient`] (its declared
/// operations only, the single-flight app token, the breakers, audit lines
/// naming the client), within a deadline; a run that fails, panics or
/// runs out of time is logged at WARN and counted
/// (`wix_elevate_job_runs_total{job, outcome}`), and not retried before
/// the next period. Runs of a job go a few at a time
/// ([`JobsBuilder::concurrency`]).
///
/// ```
/// # use wix_elevate::test_util::MockWix;
/// # use std::time::Duration;
/// use wix_elevate::Jobs;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let wix = MockWix::start().await?;
/// # let elevator = wix.elevator_builder().build()?;
/// let sync = elevator.app_client("job:hourly-sync").allow("GET /apps/v1/instance").build()?;
/// let jobs = Jobs::builder(&elevator)
///     .every(Duration::from_secs(3600), sync, |run| async move {
///         let _ = run.api().get("/apps/v1/instance").await;
///     })
///     .start();
/// // ... serve; dropping `jobs` stops them.
/// # drop(jobs);
/// # Ok(())
/// # }
/// ```
#[must_use = "the jobs stop when this is dropped"]
pub struct Jobs {
    _alive: Arc<()>,
}

/// Configures [`Jobs`].
#[must_use]
pub struct JobsBuilder {
    elevator: Elevator,
    jobs: Vec<Job>,
    deadline: Duration,
    concurrency: usize,
}

struct Job {
    client: AppClient,
    every: Duration,
    run: RunJob,
}

/// One run of a job: for one instance, in one period.
pub struct JobRun {
    instance_id: String,
    period: u64,
    api: WixApi,
}

impl JobRun {
    /// The instance this run is for.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Which period this is (Unix time divided by the job's period): the
    /// same on every replica.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// Wix, with the app's identity for this instance, limited to the
    /// job client's declared operations.
    pub fn api(&self) -> &WixApi {
        &self.api
    }
}

impl Jobs {
    /// Jobs over `elevator`'s installed instances.
    pub fn builder(elevator: &Elevator) -> JobsBuilder {
        JobsBuilder {
            elevator: elevator.clone(),
            jobs: Vec::new(),
            deadline: DEFAULT_JOB_DEADLINE,
            concurrency: 4,
        }
    }
}

impl JobsBuilder {
    /// Run `run` once every `period` for each installed instance, calling
    /// Wix through `client` (its name names the job: in its leases, logs
    /// and audit lines). A period under a second counts as a second.
    pub fn every<F, Fut>(mut self, period: Duration, client: AppClient, run: F) -> Self
    where
        F: Fn(JobRun) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.jobs.push(Job {
            client,
            every: period.max(Duration::from_secs(1)),
            run: Arc::new(move |job_run| Box::pin(run(job_run))),
        });
        self
    }

    /// How long one run may take before it counts as failed (default
    /// [`DEFAULT_JOB_DEADLINE`], a minute).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How many runs of one job go at once (default 4).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Start the jobs on the runtime in use (call it inside one).
    pub fn start(self) -> Jobs {
        let alive = Arc::new(());
        for job in self.jobs {
            let schedule = Schedule {
                elevator: self.elevator.clone(),
                job,
                deadline: self.deadline,
                slots: Arc::new(Semaphore::new(self.concurrency)),
            };
            tokio::spawn(schedule.run(Arc::downgrade(&alive)));
        }
        Jobs { _alive: alive }
    }
}

struct Schedule {
    elevator: Elevator,
    job: Job,
    deadline: Duration,
    slots: Arc<Semaphore>,
}

impl Schedule {
    /// Until the [`Jobs`] are dropped: in each period, every installed
    /// instance's run, taken by one replica.
    async fn run(self, alive: Weak<()>) {
        let every_ms = u64::try_from(self.job.every.as_millis()).unwrap_or(u64::MAX);
        let look_every = (self.job.every / 4).min(LOOK_AT_MOST_EVERY);
        // The wall clock, which every replica shares, as of now; then
        // tokio's (paused in tests).
        let (origin_ms, origin) = (crate::fleet::unix_ms(), Instant::now());
        let mut taken: HashSet<(String, u64)> = HashSet::new();
        while alive.strong_count() > 0 {
            let elapsed = u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
            let now_ms = origin_ms.saturating_add(elapsed);
            let period = now_ms / every_ms;
            taken.retain(|(_, p)| *p == period);
            for instance in self.elevator.installed_instances().await {
                if taken.contains(&(instance.clone(), period)) {
                    continue;
                }
                let mine = self
                    .elevator
                    .take_job_run(self.job.client.actor(), &instance, period, self.job.every)
                    .await;
                match mine {
                    Some(true) => self.start(instance.clone(), period).await,
                    Some(false) => {}
                    // Redis away: nobody can tell who runs it; look again.
                    None => continue,
                }
                taken.insert((instance, period));
            }
            let next_period = (period + 1).saturating_mul(every_ms).saturating_sub(now_ms);
            let pause = Duration::from_millis(next_period).min(look_every);
            tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
        }
    }

    /// One run, in a task of its own within the job's slots.
    async fn start(&self, instance: String, period: u64) {
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let job_run = JobRun {
            api: self.job.client.for_instance(&instance),
            instance_id: instance,
            period,
        };
        let (run, deadline) = (self.job.run.clone(), self.deadline);
        let name: Arc<str> = self.job.client.actor().into();
        tokio::spawn(async move {
            let outcome = run_isolated(deadline, move || run(job_run)).await;
            if outcome != "ok" {
                tracing::warn!(target: "wix_elevate::jobs", job = &*name, outcome, "scheduled job run failed");
            }
            metrics::counter!("wix_elevate_job_runs_total", "job" => name.to_string(), "outcome" => outcome)
                .increment(1);
            drop(slot);
        });
    }
}

impl fmt::Debug for Jobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

impl fmt::Debug for JobsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobsBuilder")
            .field("jobs", &self.jobs.len())
            .field("deadline", &self.deadline)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for JobRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobRun")
            .field("instance_id", &self.instance_id)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}
