//! The `rocksnap` binary, run the way an operator runs it: the one helper
//! every test that starts the binary goes through.

use std::process::{Command, Output};

/// `rocksnap ARGS` with logs off and none of the test runner's own `AWS_*`
/// settings, so that a test says every setting the command gets.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rocksnap"));
    cmd.args(args).env("RUST_LOG", "off");
    for var in [
        "AWS_ENDPOINT",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ALLOW_HTTP",
        "ROCKSNAP_ADMIN_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a command to its end.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("run rocksnap")
}

/// Runs a command that must succeed and print JSON.
pub fn ok_json(cmd: &mut Command) -> serde_json::Value {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs a command that must fail with one clear line on stderr naming
/// `expect`, a non-zero exit, and no panic. Returns that line.
pub fn fails_clearly(cmd: &mut Command, expect: &str) -> String {
    let out = output(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{cmd:?} succeeded");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(expect), "expected {expect:?} in {stderr}");
    stderr
}

/// A child process, killed (SIGKILL) and reaped if it is still running
/// when dropped: a test that fails half-way leaves none behind.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
