//! Log lines of a run carry that run's ids, even when runs interleave on one thread.
//!
//! Its own test binary: it installs a subscriber that captures log lines as JSON.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::TestApp;
use ghbs_server::executor::{ExecOutcome, Executor, RunProgress};
use ghbs_server::RunContext;
use ghbs_store::Claim;
use serde_json::Value;

/// Logs, yields so that the other run goes on, and logs again.
struct Interleaving;

#[async_trait]
impl Executor for Interleaving {
    async fn execute(&self, _: &Arc<RunContext>, claim: &Claim, _: RunProgress) -> ExecOutcome {
        for step in 0..3 {
            tracing::info!(expected_job = claim.job.id, step, "working");
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
        }
        ExecOutcome::default()
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread: the two runs interleave at every await, which is where an entered span guard
// leaks into the other run's lines.
#[tokio::test(flavor = "current_thread")]
async fn log_lines_of_two_concurrent_runs_carry_their_own_ids() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::new().await;
    let (key, _) = app.login("spans").await;
    let a = app.create_job(&key, "spans/a", "daily at 09:00").await["id"]
        .as_i64()
        .unwrap();
    let b = app.create_job(&key, "spans/b", "daily at 09:00").await["id"]
        .as_i64()
        .unwrap();
    app.clock.advance(chrono::Duration::days(1));
    let sched = app.scheduler(Arc::new(Interleaving));
    assert_eq!(sched.run_due_once().await, 2);

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let mut seen = std::collections::BTreeMap::<i64, usize>::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let Some(expected) = v["fields"]["expected_job"].as_i64() else {
            continue;
        };
        assert_eq!(v["span"]["name"], "run", "{line}");
        assert_eq!(v["span"]["job.id"].as_i64(), Some(expected), "{line}");
        assert!(v["span"]["run.id"].as_i64().is_some(), "{line}");
        *seen.entry(expected).or_default() += 1;
    }
    assert_eq!(seen, [(a, 3), (b, 3)].into_iter().collect(), "{text}");
}
