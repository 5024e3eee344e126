//! Running the application's own code outside a request (a webhook
//! handler, a scheduled job) so that nothing it does can take its caller
//! down: in a task of its own, within a deadline.

use std::{future::Future, time::Duration};

/// Call `run` and await its future in a task of its own, within
/// `deadline`: `"ok"` if it finished, `"deadline"` if it ran out of time
/// (it is dropped), `"panicked"` if it panicked, in its synchronous part
/// or its future.
pub(crate) async fn run_isolated<F, Fut>(deadline: Duration, run: F) -> &'static str
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let task =
        tokio::spawn(
            async move { tokio::time::timeout(deadline, async move { run().await }).await },
        );
    match task.await {
        Ok(Ok(())) => "ok",
        Ok(Err(_)) => "deadline",
        Err(_) => "panicked",
    }
}
