//! `weir run --checkpoint-dir DIR` and `--from-checkpoint PATH`: where a query's checkpoints go,
//! which one it resumes from, and what the user is told about it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_runtime::checkpoint::{
    check_fingerprint, fingerprint, CheckpointConfig, CheckpointStore, Guarantee, Restored,
};
use weir_sql::{Settings, StreamPlan};

/// The checkpoint options of `weir run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct CheckpointArgs {
    /// Checkpoint each query into this directory (or file:// URL), and resume from the newest
    /// complete checkpoint found there. Output tables become directories of part files,
    /// published when the checkpoint covering them completes (exactly-once).
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<String>,
    /// Time between checkpoints (default 10 s); as `SET checkpoint.interval`.
    #[arg(long, value_name = "DURATION")]
    checkpoint_interval: Option<String>,
    /// Resume from this checkpoint: a `chk-N` directory, or a checkpoint directory (its newest
    /// complete checkpoint). New checkpoints go to --checkpoint-dir, or beside it.
    #[arg(long, value_name = "PATH")]
    from_checkpoint: Option<String>,
}

impl CheckpointArgs {
    /// Whether the queries checkpoint.
    pub(crate) fn enabled(&self) -> bool {
        self.checkpoint_dir.is_some() || self.from_checkpoint.is_some()
    }

    /// How to resume after a stop: the same command, or (after `--from-checkpoint`, which
    /// would start from the chosen checkpoint again) with the checkpoint directory.
    pub(crate) fn resume_hint(&self) -> String {
        match (&self.checkpoint_dir, self.from_checkpoint.as_deref()) {
            (None, Some(from)) => {
                let dir = split_checkpoint(from).map_or_else(|| from.to_string(), |(dir, _)| dir);
                format!("run with --checkpoint-dir {dir} (not --from-checkpoint) to resume")
            }
            (Some(dir), Some(_)) => format!("run with --checkpoint-dir {dir} (not --from-checkpoint) to resume"),
            _ => "run the same command to resume".to_string(),
        }
    }
}

/// `PATH` as (checkpoint directory, checkpoint id) when its last part is `chk-N`.
fn split_checkpoint(path: &str) -> Option<(String, u64)> {
    let trimmed = path.trim_end_matches('/');
    let (parent, last) = trimmed.rsplit_once('/').unwrap_or((".", trimmed));
    let id = last.strip_prefix("chk-")?.parse().ok()?;
    Some((if parent.is_empty() { "/".into() } else { parent.into() }, id))
}

fn join(dir: &str, sub: &Option<String>) -> String {
    match sub {
        Some(s) => format!("{}/{s}", dir.trim_end_matches('/')),
        None => dir.to_string(),
    }
}

/// The checkpoint set-up of query `job` (of `total`) in a script, or `None` without
/// checkpoints. Says on stderr which checkpoint it resumes from.
pub(crate) fn setup(
    args: &CheckpointArgs,
    settings: &Settings,
    plan: &StreamPlan,
    job: usize,
    total: usize,
    label: &str,
) -> Result<Option<CheckpointConfig>, String> {
    if !args.enabled() {
        return Ok(None);
    }
    let interval = match (args.checkpoint_interval.as_deref(), settings.checkpoint_interval) {
        (Some(t), _) => match weir_sql::options::parse_duration(t) {
            Ok(n) if n > 0 => Duration::from_nanos(n as u64),
            Ok(_) => return Err("--checkpoint-interval must be longer than zero".into()),
            Err(e) => return Err(format!("--checkpoint-interval: {e}")),
        },
        (None, Some(interval)) => interval,
        (None, None) => Duration::from_secs(10),
    };
    let guarantee = settings.checkpoint_guarantee.unwrap_or(Guarantee::ExactlyOnce);
    let retain = settings.checkpoint_retain.unwrap_or(3);
    // one directory per query when a script runs several
    let sub = (total > 1).then(|| format!("query-{}", job + 1));
    let from = args.from_checkpoint.as_deref();
    let exact = from.and_then(split_checkpoint);
    if exact.is_some() && total > 1 {
        return Err("--from-checkpoint names one checkpoint, but the script runs several queries: give the checkpoint directory instead".into());
    }
    let dir = match (&args.checkpoint_dir, from, &exact) {
        (Some(d), _, _) => d.clone(),
        (None, _, Some((parent, _))) => parent.clone(),
        (None, Some(f), None) => f.to_string(),
        (None, None, None) => return Ok(None),
    };
    let store = CheckpointStore::open(&join(&dir, &sub)).map_err(|e| e.to_string())?.with_retain(retain);
    let restore = match (from, exact) {
        (_, Some((parent, id))) => {
            Some(CheckpointStore::open(&parent).and_then(|s| s.load(id)).map_err(|e| e.to_string())?)
        }
        (Some(f), None) => {
            let found = CheckpointStore::open(&join(f, &sub)).and_then(|s| s.latest()).map_err(|e| e.to_string())?;
            Some(found.ok_or_else(|| format!("--from-checkpoint: no complete checkpoint in {}", join(f, &sub)))?)
        }
        (None, None) => store.latest().map_err(|e| e.to_string())?,
    };
    let fingerprint = fingerprint(&plan.to_string());
    if let Some(r) = &restore {
        check_fingerprint(r, &fingerprint).map_err(|e| e.to_string())?;
        announce(r, label, guarantee);
    }
    Ok(Some(CheckpointConfig { store, interval, guarantee, fingerprint, restore }))
}

fn announce(r: &Restored, label: &str, guarantee: Guarantee) {
    for s in &r.skipped {
        errln!("weir: warning: skipped a damaged checkpoint: {s}");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let age = Duration::from_millis(now.saturating_sub(r.manifest.created_unix_ms) / 1000 * 1000);
    let age = humantime::format_duration(age);
    if r.manifest.finished {
        errln!("weir: {label}: {} is the checkpoint of a finished run ({age} ago); nothing left to do", r.location);
    } else {
        errln!(
            "weir: {label}: resuming from checkpoint {} ({}, taken {age} ago, {})",
            r.manifest.id,
            r.location,
            guarantee
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{split_checkpoint, CheckpointArgs};

    #[test]
    fn after_a_chosen_checkpoint_resuming_names_the_directory() {
        let args = |dir: Option<&str>, from: Option<&str>| CheckpointArgs {
            checkpoint_dir: dir.map(String::from),
            checkpoint_interval: None,
            from_checkpoint: from.map(String::from),
        };
        assert_eq!(args(Some("ck"), None).resume_hint(), "run the same command to resume");
        assert_eq!(
            args(None, Some("ck/chk-0000000003")).resume_hint(),
            "run with --checkpoint-dir ck (not --from-checkpoint) to resume"
        );
        assert_eq!(
            args(Some("new"), Some("ck/chk-3")).resume_hint(),
            "run with --checkpoint-dir new (not --from-checkpoint) to resume"
        );
    }

    #[test]
    fn a_checkpoint_path_names_its_directory_and_id() {
        assert_eq!(split_checkpoint("ck/chk-0000000012"), Some(("ck".into(), 12)));
        assert_eq!(split_checkpoint("/a/b/chk-3/"), Some(("/a/b".into(), 3)));
        assert_eq!(split_checkpoint("chk-7"), Some((".".into(), 7)));
        assert_eq!(split_checkpoint("ck"), None);
    }
}
