//! Checkpoints in an S3-compatible object store: `s3s-fs`, a real S3 server over a local
//! directory, started on loopback (installed under `target/test-tools` on first use; CI installs
//! it before the tests). A job stopped with SIGTERM resumes from the checkpoint in the bucket.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::job::*;

/// The `s3s-fs` S3-compatible server, installed under `target/test-tools` by the first test that
/// needs it (`cargo install`, about two minutes once).
fn s3s_fs() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-tools");
    let bin = root.join("bin/s3s-fs");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["install", "s3s-fs@0.14.1", "--locked", "--features", "binary", "--root"])
            .arg(&root)
            .status()
            .expect("cargo install runs");
        assert!(status.success(), "cannot install s3s-fs, the S3-compatible server the S3 test runs");
    }
    bin
}

/// A running S3-compatible server on loopback, stopped when dropped.
struct S3 {
    child: std::process::Child,
    port: u16,
    data: tempfile::TempDir,
}

impl S3 {
    const KEY: &'static str = "weir-test";
    const SECRET: &'static str = "weir-test-secret";

    fn start(bucket: &str) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(data.path().join(bucket)).expect("bucket");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let child = Command::new(s3s_fs())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                Self::KEY,
                "--secret-key",
                Self::SECRET,
            ])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "s3s-fs did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, data }
    }

    fn envs(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", Self::KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn checkpoints_in_an_s3_compatible_store_survive_a_stop() {
    let s3 = S3::start("checkpoints");
    let mut job = Job::new();
    job.location = Some("s3://checkpoints/jobs/bids".into());
    job.envs = s3.envs();
    let err = job.run_and_stop(Duration::from_millis(800));
    assert!(err.contains("stopped after checkpoint"), "{err}");
    // the checkpoints are objects in the bucket (s3s-fs keeps them as files under its root)
    let stored = s3.data.path().join("checkpoints/jobs/bids");
    let names: Vec<String> = std::fs::read_dir(&stored)
        .expect("checkpoints in the bucket")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("chk-")), "{names:?}");
    let o = job.run(&[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming from checkpoint") && err.contains("s3://checkpoints/jobs/bids/chk-"), "{err}");
    assert_eq!(rows(&job.dir.path().join("out")), job.expected);
}
