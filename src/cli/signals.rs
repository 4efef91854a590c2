//! SIGINT (Ctrl-C) and SIGTERM (what CI systems send when a job is cancelled), handled alike.
//!
//! While an apply runs, the first one stops it gracefully: no new operation starts, running ones
//! finish and are recorded. A second one, or one outside an apply, ends the process at once
//! with 130 (SIGINT) or 143 (SIGTERM), saying so. Ending at once loses nothing: every cloud
//! operation is journaled before it is sent, and the next run reconciles it.

use std::sync::Mutex;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::context::CommandLine;
use super::error::{CliError, Signal as Sig};
use super::shell::Shell;

/// The running apply's cancellation, if one is running.
static APPLY: Mutex<Option<CancellationToken>> = Mutex::new(None);

/// A signal that stops teeform, and how to say so.
struct Stop {
    name: &'static str,
    again: &'static str,
    /// Which one (its error kind gives the exit code: 128 + its number, as shells report it).
    signal: Sig,
}

const INT: Stop = Stop { name: "interrupt received (Ctrl-C)", again: "Press Ctrl-C", signal: Sig::Int };
const TERM: Stop = Stop { name: "termination requested (SIGTERM)", again: "Send it (or Ctrl-C)", signal: Sig::Term };

/// Starts listening for SIGINT and SIGTERM for the rest of the process. Call inside the runtime.
pub fn install(shell: Shell, cmd: CommandLine) {
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    tokio::spawn(async move {
        loop {
            let stop = next(&mut int, &mut term).await;
            let running = APPLY.lock().expect("signal lock").clone().filter(|t| !t.is_cancelled());
            match running {
                Some(apply) => {
                    // An answer to what the user just did: shown even with -q.
                    shell.err_line(&format!(
                        "{} {}: no new operations will start; running ones finish and are recorded. {} again to stop at once.",
                        shell.err_palette().yellow("warning:"),
                        stop.name,
                        stop.again
                    ));
                    apply.cancel();
                }
                None => {
                    let in_apply = APPLY.lock().expect("signal lock").is_some();
                    let message = if in_apply {
                        "aborting; the next run will reconcile interrupted operations".to_string()
                    } else {
                        format!("{}: stopping (no operation was in flight)", stop.name)
                    };
                    // Ends the process at once, whatever the command is blocked on (a prompt
                    // reading stdin, a request): nothing is lost, see the module's doc.
                    let e = CliError::interrupted(stop.signal, message);
                    shell.error(&e, &cmd);
                    std::process::exit(e.exit_code().into());
                }
            }
        }
    });
}

async fn next(int: &mut Signal, term: &mut Signal) -> Stop {
    tokio::select! {
        _ = int.recv() => INT,
        _ = term.recv() => TERM,
    }
}

/// Makes the first signal cancel `token` (instead of ending the process) until dropped.
pub struct Graceful(());

impl Graceful {
    pub fn new(token: &CancellationToken) -> Graceful {
        *APPLY.lock().expect("signal lock") = Some(token.clone());
        Graceful(())
    }
}

impl Drop for Graceful {
    fn drop(&mut self) {
        *APPLY.lock().expect("signal lock") = None;
    }
}
