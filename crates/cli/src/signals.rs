//! Interrupts: Ctrl-C (SIGINT), SIGTERM and SIGHUP all ask a following command to stop.
//!
//! Once [`Interrupts::install`] has run, none of them ends the process by itself any
//! more (their default action is replaced for the rest of its life), so `step run` can
//! cancel or keep its step as `on_interrupt` says whichever of them arrives: a closed
//! terminal (SIGHUP) or a `kill`/container stop (SIGTERM) no longer leaves a running
//! Job behind a record that stays `pending`.

use crate::exit::{CliError, CliResult, Exit};

/// The interrupt signals of this process, once installed.
#[derive(Debug)]
pub(crate) struct Interrupts {
    #[cfg(unix)]
    streams: [(tokio::signal::unix::Signal, &'static str); 3],
}

impl Interrupts {
    /// Takes over SIGINT, SIGTERM and SIGHUP (Ctrl-C elsewhere). Must run inside the
    /// async runtime.
    pub(crate) fn install() -> CliResult<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &'static str| {
                signal(kind).map(|s| (s, name)).map_err(|e| {
                    CliError::new(
                        Exit::Internal,
                        anyhow::anyhow!("could not listen for {name}: {e}"),
                    )
                })
            };
            Ok(Interrupts {
                streams: [
                    listen(SignalKind::interrupt(), "Ctrl-C")?,
                    listen(SignalKind::terminate(), "SIGTERM")?,
                    listen(SignalKind::hangup(), "SIGHUP")?,
                ],
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
        }
    }

    /// Waits for the next interrupt and names it (`Ctrl-C`, `SIGTERM`, `SIGHUP`).
    pub(crate) async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let [(int, a), (term, b), (hup, c)] = &mut self.streams;
            tokio::select! {
                _ = int.recv() => *a,
                _ = term.recv() => *b,
                _ = hup.recv() => *c,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Ends the process at once with [`Exit::Interrupted`]: the answer to a second
/// interrupt, when the user no longer wants to wait for the cleanup the first started.
pub(crate) fn exit_now(signal: &str, step_run_id: &str) -> ! {
    crate::output::message(&format!(
        "{signal} again: exiting without waiting; step run {step_run_id} may still be running (`stepstack step cancel {step_run_id}` stops it)"
    ));
    std::process::exit(Exit::Interrupted as i32)
}
