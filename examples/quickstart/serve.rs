//! The quickstart's HTTP server, made safe to copy: a header-read timeout
//! (a client that sends half its headers is dropped), a deadline on
//! graceful shutdown (one stalled connection cannot keep the process
//! alive), and the Prometheus recorder's upkeep on a timer (latency
//! samples are folded in even when nobody scrapes `/metrics`).

use std::{future::Future, io, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

/// How long a client may take to send a request's headers.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after a shutdown signal.
pub(crate) const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// How often the Prometheus recorder folds its pending samples.
pub(crate) const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Serve `app` on `listener` until `shutdown` completes, then give open
/// connections `deadline` to finish before returning regardless.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    deadline: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // A failed accept (a client gone, no file descriptors) is
                // that connection's problem, not the server's.
                let Ok((stream, _)) = accepted else { continue };
                let service = TowerToHyperService::new(app.clone());
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        println!("shutdown deadline passed: closing the remaining connections");
    }
    Ok(())
}

/// Run the recorder's upkeep every `period`, for as long as the process
/// lives.
pub(crate) fn spawn_metrics_upkeep(handle: PrometheusHandle, period: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}
