//! Two server nodes on one PostgreSQL database never run the same slot twice.
//! Needs PostgreSQL: runs when `TEST_DATABASE_URL` is set (CI sets it), otherwise says why it skips.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Duration;
use common::TestApp;
use ghbs_core::Clock;
use ghbs_server::executor::{ExecOutcome, Executor, RunProgress};
use ghbs_server::scheduler::Scheduler;
use ghbs_server::{AppState, RunContext, ServerConfig};
use ghbs_store::Claim;

/// Records which job each node ran; tests only.
struct Recording {
    node: &'static str,
    seen: Arc<Mutex<Vec<(&'static str, i64)>>>,
}

#[async_trait]
impl Executor for Recording {
    async fn execute(&self, _: &Arc<RunContext>, claim: &Claim, _: RunProgress) -> ExecOutcome {
        self.seen.lock().unwrap().push((self.node, claim.job.id));
        // Let the other node interleave its claims with ours.
        tokio::task::yield_now().await;
        ExecOutcome::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_slot_runs_exactly_once_across_two_nodes() {
    let Some(url) = ghbs_testkit::pg_schema_url("the two-node PostgreSQL test", "nodes").await
    else {
        return;
    };
    let a = TestApp::with(|c| {
        c.database_url = url.clone();
        c.workers = 8;
    })
    .await;
    let dir_b = tempfile::tempdir().unwrap();
    let mut cfg_b: ServerConfig = (*a.state.cfg).clone();
    cfg_b.data_dir = dir_b.path().to_path_buf();
    let clock: Arc<dyn Clock> = a.clock.clone();
    let b_state = AppState::new(cfg_b, clock).await.unwrap();

    let (key, _) = a.login("nina").await;
    let jobs = 120;
    for i in 0..jobs {
        a.create_job(&key, &format!("nina/repo{i}"), "daily at 09:00")
            .await;
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let node_a = a.scheduler(Arc::new(Recording {
        node: "a",
        seen: seen.clone(),
    }));
    let node_b = Scheduler::new(
        b_state,
        Arc::new(Recording {
            node: "b",
            seen: seen.clone(),
        }),
    );
    for day in 1..=3 {
        a.clock.advance(Duration::days(1));
        let (ran_a, ran_b) = tokio::join!(node_a.run_due_once(), node_b.run_due_once());
        assert_eq!(ran_a + ran_b, jobs, "day {day}: every due job claimed once");
        let mut per_job: BTreeMap<i64, usize> = BTreeMap::new();
        for (_, job) in seen.lock().unwrap().drain(..) {
            *per_job.entry(job).or_default() += 1;
        }
        assert_eq!(per_job.len(), jobs, "day {day}");
        assert!(
            per_job.values().all(|&n| n == 1),
            "day {day}: a slot ran twice: {per_job:?}"
        );
        eprintln!("day {day}: node a ran {ran_a}, node b ran {ran_b}");
    }
}
