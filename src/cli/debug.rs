//! `teeform debug ...`: hidden commands that expose teeform's wire primitives to the
//! conformance suite (tests/conformance), so the official Node SDK can referee them.
//! Not for users: hidden from `--help`, and their output format may change.

use std::io::Read;

use clap::Subcommand;

use super::error::{CliError, CliResult, exit};
use super::shell::Shell;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Read an app compose (JSON) on stdin; print `{"compose_hash", "canonical_json"}`.
    ComposeHash,
    /// Read `{"KEY": "value", ...}` on stdin; print the env encrypted to PUBKEY (hex).
    EncryptEnv {
        /// The recipient's X25519 public key, hex (0x optional).
        #[arg(long, value_name = "HEX")]
        pubkey: String,
    },
}

fn stdin_json() -> Result<serde_json::Value, CliError> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).map_err(|e| CliError::new(format!("cannot read stdin: {e}")))?;
    serde_json::from_str(&s).map_err(|e| CliError::new(format!("stdin is not JSON: {e}")))
}

pub fn run(shell: &Shell, cmd: DebugCommand) -> CliResult {
    match cmd {
        DebugCommand::ComposeHash => {
            let v = stdin_json()?;
            if !v.is_object() {
                return Err(CliError::new("an app compose is a JSON object"));
            }
            let out = serde_json::json!({
                "compose_hash": crate::compose::hash(&v),
                "canonical_json": crate::compose::canonical_json(&v),
            });
            shell.println(&out.to_string())?;
        }
        DebugCommand::EncryptEnv { pubkey } => {
            let v = stdin_json()?;
            let Some(m) = v.as_object() else {
                return Err(CliError::new("the env is a JSON object of strings"));
            };
            let mut env = Vec::with_capacity(m.len());
            for (k, val) in m {
                let val = val.as_str().ok_or_else(|| CliError::new(format!("env `{k}` is not a string")))?;
                env.push((k.clone(), val.to_string()));
            }
            shell.println(&crate::envcrypt::encrypt(&env, &pubkey).map_err(|e| CliError::new(e.to_string()))?)?;
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::cli::Cli;

    #[test]
    fn parses_but_stays_out_of_help() {
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.lines().any(|l| l.trim_start().starts_with("debug")), "{help}");
        assert!(Cli::try_parse_from(["teeform", "debug", "compose-hash"]).is_ok());
        assert!(Cli::try_parse_from(["teeform", "debug", "encrypt-env", "--pubkey", "00"]).is_ok());
        assert!(Cli::try_parse_from(["teeform", "debug", "encrypt-env"]).is_err(), "--pubkey is required");
    }
}
