#![doc = include_str!("../README.md")]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `stepstack` binary with a private home directory.
#[derive(Debug)]
pub struct Stepstack {
    binary: PathBuf,
    home: tempfile::TempDir,
}

/// What one command printed and how it exited.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Stepstack {
    /// The binary next to this test executable, with a new empty home.
    ///
    /// # Panics
    ///
    /// When the binary has not been built (`cargo build -p stepstack-cli`).
    pub fn new() -> Self {
        let binary = binary_path("stepstack");
        assert!(
            binary.exists(),
            "{} does not exist; build it first with `cargo build -p stepstack-cli`",
            binary.display()
        );
        Stepstack {
            binary,
            home: tempfile::tempdir().expect("a temporary home directory"),
        }
    }

    /// The home directory the commands use.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A command with the home set and nothing inherited that could change its behaviour.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .env("STEPSTACK_HOME", self.home.path())
            .env_remove("STEPSTACK_LOG")
            .env_remove("KUBECONFIG");
        command
    }

    /// Runs `stepstack ARGS…` to completion.
    pub fn run<I, S>(&self, args: I) -> Output
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
}

impl Default for Stepstack {
    fn default() -> Self {
        Stepstack::new()
    }
}

/// A binary built into the same target directory as the running test.
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/debug/deps/test-HASH → target/debug/NAME
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}
