//! Scheduled jobs without Redis: each installed instance (learnt from its
//! callers and from `AppInstalled`, dropped on `AppRemoved`) gets one run
//! per period, through the job's declared operations; time is tokio's,
//! paused and moved by the test.

use std::time::Duration;

use wix_elevate::{
    Jobs, SubjectType,
    test_util::{CallerSpec, MockEndpoint, MockWebhook, WEBHOOK_PUBLIC_KEY},
    webhook::{WebhookEndpoint, WebhookKeys, WebhookVerifier},
};

use crate::support::harness;

#[tokio::test]
async fn a_job_runs_once_per_period_for_every_installed_instance() {
    let h = harness().await;
    // A caller proves one instance; an `AppInstalled` names another.
    let member = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("inst-caller"));
    assert_eq!(h.get("/whoami", Some(&member)).await.status, 200);
    let webhooks = WebhookEndpoint::builder(
        &h.elevator,
        WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap()),
    )
    .build();
    let installed = MockWebhook::app_installed("inst-webhook").sign();
    assert_eq!(webhooks.deliver(installed.as_bytes()).await.status(), 200);
    assert_eq!(
        h.elevator.installed_instances().await,
        ["inst-caller", "inst-webhook"]
    );

    let client = h
        .elevator
        .app_client("job:hourly-sync")
        .allow("GET /apps/v1/instance")
        .build()
        .unwrap();
    let (runs, mut ran) = tokio::sync::mpsc::unbounded_channel();
    let jobs = Jobs::builder(&h.elevator)
        .every(Duration::from_secs(3600), client, move |run| {
            let runs = runs.clone();
            async move {
                let read = run.api().get("/apps/v1/instance").await.is_ok();
                let _ = runs.send((run.instance_id().to_owned(), run.period(), read));
            }
        })
        .start();
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(ran.recv().await.unwrap());
    }
    // The next hour, less the removed instance.
    let removed = MockWebhook::app_removed("inst-webhook").sign();
    assert_eq!(webhooks.deliver(removed.as_bytes()).await.status(), 200);
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3600)).await;
    tokio::time::resume();
    seen.push(ran.recv().await.unwrap());
    seen.sort();
    let first = seen.iter().map(|(_, period, _)| *period).min().unwrap();
    assert_eq!(
        seen,
        [
            ("inst-caller".to_owned(), first, true),
            ("inst-caller".to_owned(), first + 1, true),
            ("inst-webhook".to_owned(), first, true),
        ]
    );
    assert_eq!(h.wix.calls(MockEndpoint::GetAppInstance), 3);
    drop(jobs);
    assert!(ran.try_recv().is_err(), "nothing else ran: {seen:?}");
}
