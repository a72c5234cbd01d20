//! The `stepstack` binary (built by cargo for these tests) with a private home, run
//! under a chosen umask.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What one command printed and how it exited.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    /// The exit code (`-1` when killed by a signal).
    pub(crate) code: i32,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

/// The binary with a home at `<base>/home`; `base` holds nothing else, so anything
/// written next to the home is a file that escaped it.
pub(crate) struct Cli {
    base: tempfile::TempDir,
    home: PathBuf,
    umask: &'static str,
    env: Vec<(String, String)>,
}

impl Cli {
    /// A new empty home (not created yet: the first command makes it).
    pub(crate) fn new() -> Self {
        let base = tempfile::tempdir().expect("a temporary directory");
        let home = base.path().join("home");
        Cli {
            base,
            home,
            umask: "022",
            env: Vec::new(),
        }
    }

    /// The directory that holds the home.
    pub(crate) fn base(&self) -> &Path {
        self.base.path()
    }

    /// The home directory the commands use.
    pub(crate) fn home(&self) -> &Path {
        &self.home
    }

    /// Sets an environment variable for every command.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `stepstack ARGS…` under umask 022, with the home set and nothing inherited that
    /// could change its behaviour.
    pub(crate) fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(format!("umask {}; exec \"$0\" \"$@\"", self.umask))
            .arg(env!("CARGO_BIN_EXE_stepstack"))
            .args(args)
            .env("STEPSTACK_HOME", &self.home)
            .env_remove("STEPSTACK_LOG")
            .env_remove("STEPSTACK_SECRETS_KEY")
            .env_remove("KUBECONFIG")
            .env("HOME", self.base.path());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Runs `stepstack ARGS…` to completion.
    pub(crate) fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = self.command(args).output().expect("stepstack runs");
        Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs and expects exit code 0.
    pub(crate) fn ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(args);
        assert_eq!(out.code, 0, "expected success: {out:?}");
        out
    }
}

/// Starts the local cluster and stops it when dropped, even when an assertion fails.
pub(crate) struct LocalCluster<'a>(pub(crate) &'a Cli);

impl<'a> LocalCluster<'a> {
    /// `local-cluster start --namespace ml`.
    pub(crate) fn start(cli: &'a Cli) -> Self {
        cli.ok(["local-cluster", "start", "--namespace", "ml"]);
        LocalCluster(cli)
    }
}

impl Drop for LocalCluster<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(["local-cluster", "stop"]);
    }
}
