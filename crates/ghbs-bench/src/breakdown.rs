//! Where an unchanged run's time goes: the per-repository steps the backup executor takes when
//! GitHub reports nothing pushed, timed one by one through the same public APIs (store and
//! engine) on the benchmark's mirrors, sequentially as the executor does them.

use std::sync::Arc;
use std::time::Instant;

use ghbs_engine::{Manifest, RepoCapture};
use ghbs_server::backup::mirror_key;
use ghbs_server::AppState;
use ghbs_store::JobRow;

use crate::report::{figure, secs};

/// Runs after the comparisons: it records one extra snapshot (refs only, no database row) in
/// the mirrors, which nothing measured afterwards depends on.
pub async fn unchanged_run(state: &Arc<AppState>, job: &JobRow) -> anyhow::Result<()> {
    let store = &state.store;
    let rows = store.list_job_repos(job.id).await?;
    let n = rows.len();

    let t = Instant::now();
    for r in &rows {
        store.job_repo(job.id, &r.full_name, r.github_id).await?;
    }
    let lookups = t.elapsed();

    let t = Instant::now();
    let mut captures = Vec::with_capacity(n);
    for r in &rows {
        let key = mirror_key(r.id);
        let refs = state.engine.mirror_refs(&key).await?;
        captures.push(RepoCapture {
            key,
            full_name: r.full_name.clone(),
            default_branch: Some("main".into()),
            refs,
            metadata_dir: None,
            carried: None,
        });
    }
    let list_refs = t.elapsed();

    let keys: Vec<String> = captures.iter().map(|c| c.key.clone()).collect();
    let manifest = Manifest {
        snapshot_key: format!("bench-breakdown-{}", chrono::Utc::now().timestamp_millis()),
        repos: captures,
    };
    let t = Instant::now();
    state.engine.commit_snapshot(&manifest).await?;
    let commit = t.elapsed();

    let t = Instant::now();
    state.engine.disk_usage(&keys).await?;
    let usage = t.elapsed();

    let t = Instant::now();
    for r in &rows {
        store.set_job_repo_state(r.id, &r.state).await?;
    }
    let states = t.elapsed();

    let per = |d: std::time::Duration| {
        format!(
            "{} ({:.1} ms/repo)",
            secs(d),
            d.as_secs_f64() * 1000.0 / n.max(1) as f64
        )
    };
    println!(
        "   where an unchanged run's time goes ({n} repositories, sequential as in the executor):"
    );
    figure("     store.job_repo lookups", per(lookups));
    figure("     engine.mirror_refs (git for-each-ref)", per(list_refs));
    figure(
        "     engine.commit_snapshot (update-ref, pack-refs, fsync)",
        per(commit),
    );
    figure("     engine.disk_usage", per(usage));
    figure("     store.set_job_repo_state", per(states));
    Ok(())
}
