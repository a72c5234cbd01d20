//! One container instance as a local process: spawned in its own process group with
//! its environment and working directory, stdout/stderr copied into its log, signalled
//! through the group.

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::task::JoinHandle;

use crate::runtime::logs::{LogFile, pump};

/// A running container process.
#[derive(Debug)]
pub(crate) struct Running {
    child: tokio::process::Child,
    /// The process group (= the child's pid).
    pub(crate) pgid: i32,
    pumps: Vec<JoinHandle<()>>,
    log: LogFile,
}

/// How a container process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    /// The exit code as Kubernetes reports it (128 + signal when killed).
    pub(crate) code: i32,
    /// The signal that killed it, if any.
    pub(crate) signal: Option<i32>,
}

/// The runtime's error for a process that can't start (as containerd/runc word it).
pub(crate) fn start_error_message(program: &str, err: &std::io::Error) -> String {
    let detail = match err.kind() {
        std::io::ErrorKind::NotFound if program.contains('/') => {
            format!("exec: \"{program}\": stat {program}: no such file or directory")
        }
        std::io::ErrorKind::NotFound => {
            format!("exec: \"{program}\": executable file not found in $PATH")
        }
        std::io::ErrorKind::PermissionDenied => format!("exec: \"{program}\": permission denied"),
        _ => format!("exec: \"{program}\": {err}"),
    };
    format!(
        "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: {detail}: unknown"
    )
}

/// Starts `argv` with exactly `env`, in `cwd`, in a new process group, with stdout and
/// stderr going to `log`. `Err` is the runtime's start error message.
pub(crate) fn spawn(
    argv: &[String],
    env: &[(String, String)],
    cwd: &Path,
    log: &LogFile,
) -> Result<Running, String> {
    let Some(program) = argv.first() else {
        return Err(
            "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: no command specified: unknown"
                .to_string(),
        );
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| start_error_message(program, &e))?;
    let pgid = child.id().map_or(0, |id| id as i32);
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(out, "stdout", log.clone())));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(err, "stderr", log.clone())));
    }
    Ok(Running {
        child,
        pgid,
        pumps,
        log: log.clone(),
    })
}

/// Sends a signal to a process group; false if it no longer exists.
pub(crate) fn signal_group(pgid: i32, signal: Signal) -> bool {
    if pgid <= 0 {
        return false;
    }
    killpg(Pid::from_raw(pgid), signal).is_ok()
}

impl Running {
    /// Waits for the process to exit, kills what is left of its group (a container's
    /// processes die with its main process), drains its output and closes the log.
    pub(crate) async fn wait(mut self) -> Exit {
        let status = self.child.wait().await;
        signal_group(self.pgid, Signal::SIGKILL);
        for p in self.pumps.drain(..) {
            // A grandchild outside the group could hold the pipe open; don't hang on it.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), p).await;
        }
        self.log.close();
        match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => Exit { code, signal: None },
                (None, Some(sig)) => Exit {
                    code: 128 + sig,
                    signal: Some(sig),
                },
                (None, None) => Exit {
                    code: 1,
                    signal: None,
                },
            },
            Err(e) => {
                tracing::warn!(error = %e, "waiting for a container process failed");
                Exit {
                    code: 1,
                    signal: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> (tempfile::TempDir, LogFile) {
        let d = tempfile::tempdir().unwrap();
        let l = LogFile::create(&d.path().join("0.log")).unwrap();
        (d, l)
    }

    fn path_env() -> Vec<(String, String)> {
        vec![(
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )]
    }

    #[tokio::test]
    async fn runs_and_reports_exit_codes() {
        let (d, l) = log();
        let argv: Vec<String> = ["sh", "-c", "echo out; echo err >&2; exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let exit = spawn(&argv, &path_env(), d.path(), &l)
            .unwrap()
            .wait()
            .await;
        assert_eq!(
            exit,
            Exit {
                code: 3,
                signal: None
            }
        );
        let raw = std::fs::read_to_string(l.path()).unwrap();
        assert!(raw.contains(" stdout F out\n"), "{raw}");
        assert!(raw.contains(" stderr F err\n"), "{raw}");
        assert!(l.is_closed());
    }

    #[tokio::test]
    async fn signals_reach_the_group() {
        let (d, l) = log();
        let argv: Vec<String> = ["sh", "-c", "sleep 30"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let running = spawn(&argv, &path_env(), d.path(), &l).unwrap();
        assert!(signal_group(running.pgid, Signal::SIGKILL));
        let exit = running.wait().await;
        assert_eq!(exit.code, 137);
        assert_eq!(exit.signal, Some(9));
    }

    #[test]
    fn missing_executable_message() {
        let (d, l) = log();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        let err = spawn(
            &["no-such-binary-xyz".to_string()],
            &path_env(),
            d.path(),
            &l,
        )
        .unwrap_err();
        assert!(
            err.contains("exec: \"no-such-binary-xyz\": executable file not found in $PATH"),
            "{err}"
        );
        let err = spawn(&[], &path_env(), d.path(), &l).unwrap_err();
        assert!(err.contains("no command specified"));
    }
}
