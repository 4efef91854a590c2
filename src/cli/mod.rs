//! The command line: clap arguments (this file), then one file per command (`plan.rs`,
//! `apply.rs`, `state_show.rs`, …), each with a `run` function; what commands share is in
//! [`shared`], what every command gets ([`context::Ctx`]: flags, [`shell::Shell`],
//! settings) in [`context`]. `main` only calls [`main`] here and exits with its code.
//!
//! Invariants: no command file imports another; nothing prints but the [`shell::Shell`];
//! every failure is a [`error::CliError`], whose kind picks the exit code.

mod apply;
pub mod context;
mod debug;
mod destroy;
pub mod error;
mod force_unlock;
mod graph;
mod images;
mod import;
mod output;
mod plan;
mod schema;
mod settings;
mod shared;
pub mod shell;
mod show;
mod signals;
mod sim;
mod state_bind;
mod state_list;
mod state_migrate;
mod state_mv;
mod state_recover;
mod state_rm;
mod state_show;
mod status;
mod terraform;
mod validate;
mod verify;
mod workspace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::model::Address;
use context::{CommandLine, Ctx};
use error::{CliError, exit};
use shell::{ColorChoice, Shell, Verbosity};

const AFTER_HELP: &str = "Exit codes: 0 success (or no changes), 1 error, 2 changes present (plan --detailed-exitcode), 3 apply paused awaiting on-chain registration, 130/143 interrupted (SIGINT/SIGTERM), 141 stdout closed by its reader.\nEnvironment: PHALA_CLOUD_API_KEY (else PHALA_OIDC_TOKEN with PHALA_CLOUD_WORKSPACE), PHALA_CLOUD_API_PREFIX, NO_COLOR, TEEFORM_LOG (e.g. debug), TEEFORM_VAR_<name>, TEEFORM_PG_CONN, TEEFORM_WORKSPACE.";

/// Declarative plan/apply for Phala Cloud confidential VMs.
#[derive(Debug, Parser)]
#[command(name = "teeform", version, about, long_about = None, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Run as if teeform was started in DIR.
    #[arg(short = 'C', value_name = "DIR", global = true)]
    pub chdir: Option<PathBuf>,
    /// The manifest to use.
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "teeform.yaml", global = true)]
    pub file: PathBuf,
    /// The state directory (default: beside the manifest, `state/` for `teeform.yaml` and
    /// `NAME.state/` for `NAME.yaml`).
    #[arg(long = "state", value_name = "DIR", global = true)]
    pub state: Option<PathBuf>,
    /// When to use colour: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    /// Never use colour (the same as --color never).
    #[arg(long, global = true, hide = true)]
    pub no_color: bool,
    /// Print only errors and the command's output: no status lines, notes, warnings or
    /// progress.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also log every API request and chain call to stderr (as TEEFORM_LOG=teeform=debug).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Where the state is kept (overrides the manifest's `backend:`; postgres reads TEEFORM_PG_CONN).
    #[arg(long, value_enum, value_name = "KIND", global = true)]
    pub backend: Option<BackendArg>,
    /// Keep several environments (e.g. staging, prod) apart in one state store [default: default].
    #[arg(long, value_name = "NAME", env = "TEEFORM_WORKSPACE", global = true)]
    pub workspace: Option<String>,
    /// The profile of the phala CLI's credentials file to use (default: its
    /// `current_profile`): its token, and its `api_prefix` unless the manifest or
    /// PHALA_CLOUD_API_PREFIX names the endpoint.
    #[arg(long, value_name = "NAME", global = true)]
    pub profile: Option<String>,
}

/// A state backend, as `--backend` and `state migrate --to` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// sled under the state directory.
    Local,
    /// PostgreSQL at TEEFORM_PG_CONN.
    Postgres,
}

#[derive(Debug, Clone, Default, Args)]
pub struct VarArgs {
    /// Set a variable: NAME=VALUE (repeatable; wins over every variable file).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Read variable values from FILE (repeatable; a later file wins): YAML (`.yaml`, `.yml`,
    /// `.json`) or `.tfvars`-style NAME = VALUE lines. `*.auto.vars.yaml` files beside the
    /// manifest are read first, always.
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

pub(crate) fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, got `{s}`"))
}

fn parse_parallelism(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a whole number of at least 1, got `{s}`")),
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub vars: VarArgs,
    /// How many CVMs to work on at once.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = parse_parallelism)]
    pub parallelism: usize,
    /// Wait this long for the state lock (e.g. 60s) instead of failing at once.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0s")]
    pub lock_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Refresh from the API before planning (`--refresh=false`: use cached state only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub refresh: bool,
    /// Only show what changed outside teeform; apply would only update state.
    #[arg(long, conflicts_with = "destroy")]
    pub refresh_only: bool,
    /// Plan to destroy everything in state.
    #[arg(long)]
    pub destroy: bool,
    /// Fail if a data source has no pin in the lock file (or its selector changed since),
    /// instead of resolving and pinning it now.
    #[arg(long)]
    pub locked: bool,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Replace the CVM at ADDRESS (e.g. `cvm.web`) though nothing forces it: it gets a new app
    /// id, new KMS-derived keys and an empty disk (repeatable).
    #[arg(long = "replace", value_name = "ADDRESS", value_parser = Address::parse, conflicts_with_all = ["destroy", "refresh_only"])]
    pub replace: Vec<Address>,
    /// Consent to every replacement in the plan. Without it, apply refuses a plan that replaces
    /// a CVM nobody named with --replace (a replacement loses its app id, keys and disk).
    #[arg(long)]
    pub allow_replace: bool,
}

impl PlanArgs {
    /// A plain plan (refreshed, whole, nothing to replace) with these variables: what
    /// `state list --long` shows the table of.
    pub fn read_only(vars: VarArgs) -> PlanArgs {
        PlanArgs {
            run: RunArgs { vars, parallelism: 10, lock_timeout: std::time::Duration::ZERO },
            refresh: true,
            refresh_only: false,
            destroy: false,
            locked: false,
            targets: TargetArgs::default(),
            replace: Vec::new(),
            allow_replace: false,
        }
    }

    /// What the run asks for beyond the manifest.
    pub fn requests(&self) -> crate::plan::Requests {
        crate::plan::Requests {
            replace: self.replace.clone(),
            target: self.targets.target.clone(),
            exclude: self.targets.exclude.clone(),
            allow_replace: self.allow_replace,
        }
    }
}

/// A partial plan (Terraform's `-target` and `-exclude`).
#[derive(Debug, Clone, Default, Args)]
pub struct TargetArgs {
    /// Plan only the CVM at ADDRESS (e.g. `cvm.web`) and what it depends on (repeatable; a
    /// destroy takes what depends on it too). For exceptional cases: the rest waits for a
    /// full plan.
    #[arg(long = "target", value_name = "ADDRESS", value_parser = Address::parse)]
    pub target: Vec<Address>,
    /// Leave out the CVM at ADDRESS and what depends on it (repeatable; a destroy keeps what
    /// it depends on too).
    #[arg(long = "exclude", value_name = "ADDRESS", value_parser = Address::parse)]
    pub exclude: Vec<Address>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the manifest: syntax, types, files, references, cycles. Touches nothing.
    Validate {
        #[command(flatten)]
        vars: VarArgs,
        /// Print diagnostics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what apply would change.
    Plan {
        #[command(flatten)]
        plan: PlanArgs,
        /// Save the plan to FILE for `apply FILE`.
        #[arg(long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
        /// Exit 0 when there are no changes, 2 when there are, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Print the plan as JSON (a manifest with errors: its diagnostics, as `validate
        /// --json` prints them; any other failure: `{"errored": true, "diagnostics": [...]}`).
        #[arg(long)]
        json: bool,
        /// With --json: the plan as JSON events, one per line (as `apply --json` writes
        /// them), instead of one document.
        #[arg(long, requires = "json")]
        stream: bool,
        /// Print the plan as GitHub-flavoured markdown (for a pull-request comment or a job
        /// summary): under 65,536 characters, secrets masked.
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
    },
    /// Make the CVMs match the manifest (or apply a saved plan exactly).
    Apply(ApplyArgs),
    /// Destroy every CVM in state (or, with --target/--exclude, some of them).
    Destroy {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        targets: TargetArgs,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        /// Write the run as JSON events, one per line (as `apply --json`).
        #[arg(long)]
        json: bool,
    },
    /// Show a saved plan, or the state when no file is given.
    Show {
        /// A plan saved with `plan --out`.
        #[arg(value_name = "PLAN_FILE")]
        plan_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Show the saved plan as GitHub-flavoured markdown (for a pull-request comment or a
        /// job summary): under 65,536 characters, secrets masked.
        #[arg(long, conflicts_with = "json", requires = "plan_file")]
        markdown: bool,
    },
    /// A table of the CVMs: status (refreshed from the API), app id, compose hash, and what
    /// apply would do to each. Changes nothing.
    Status {
        #[command(flatten)]
        plan: PlanArgs,
        /// Print the table as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that CVMs run what was applied: each one's attestation (RTMR3 event log
    /// replayed; app id, instance id, compose hash and OS image compared with state and the
    /// image catalog; the TDX quote verified with a PCCS's collateral and bound to RTMR3; for
    /// on-chain KMS, the compose hash allowed by the app contract). Exit 1 if any is not
    /// verified.
    Verify {
        /// CVM addresses (`cvm.web`); every CVM in state when none is given.
        #[arg(value_name = "ADDR")]
        addresses: Vec<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        quote: QuoteArgs,
    },
    /// Show outputs from state.
    Output {
        /// One output.
        name: Option<String>,
        #[arg(long)]
        json: bool,
        /// Print one output's value alone: no name, no quotes, no trailing newline (for
        /// scripts). A sensitive output is recomputed from the manifest and its secrets and
        /// printed only if it is the value last applied.
        #[arg(long, conflicts_with = "json")]
        raw: bool,
        /// Variables, for recomputing a sensitive output with `--raw`.
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Inspect or edit state.
    #[command(subcommand)]
    State(StateCommand),
    /// The workspaces of the backend in use (`--workspace NAME` or TEEFORM_WORKSPACE picks
    /// one; using a workspace makes it).
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Bring an existing CVM under management: `import cvm.NAME CVM_ID`.
    Import {
        /// The address in the manifest, e.g. `cvm.web`.
        address: String,
        /// The CVM's id, UUID, `app_<id>` or name.
        id: String,
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0s")]
        lock_timeout: std::time::Duration,
    },
    /// Remove a lock left behind by a process that is gone.
    ForceUnlock {
        /// The lock id from the "state is locked" message.
        id: String,
    },
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
    /// The dependency graph of the manifest's CVMs, as DOT or Mermaid; an arrow reads
    /// "depends on".
    Graph {
        #[command(flatten)]
        vars: VarArgs,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Print the JSON Schema of teeform.yaml, for editors (committed as teeform.schema.json).
    Schema,
    /// The local Phala Cloud simulator.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Wire primitives for the conformance suite (hidden; not a user interface).
    #[command(subcommand, hide = true)]
    Debug(debug::DebugCommand),
    /// OS images from the Phala, nscale and OCI catalogs: browse, and move pinned images.
    #[command(subcommand)]
    Images(images::ImagesCommand),
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// A plan saved with `plan --out`; applied exactly, or refused if state moved on.
    pub plan_file: Option<PathBuf>,
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Resume updates paused for on-chain registration.
    #[arg(long)]
    pub resume: bool,
    /// With --resume: the transaction that registered the compose hash.
    #[arg(long, value_name = "0x…", requires = "resume")]
    pub tx_hash: Option<String>,
    /// With --resume: how long to wait for the chain to allow the hash (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10m")]
    pub timeout: std::time::Duration,
    /// Stop after preparing on-chain updates; print what a multisig must sign.
    #[arg(long)]
    pub prepare_only: bool,
    /// Skip the attestation gate (each CVM created or updated is otherwise verified once it
    /// runs); the summary says it was skipped.
    #[arg(long)]
    pub no_verify: bool,
    #[command(flatten)]
    pub quote: QuoteArgs,
    /// Write the run as JSON events, one per line on stdout (planned changes, each step's
    /// start, progress and outcome, the summary); needs --auto-approve or a plan file.
    #[arg(long)]
    pub json: bool,
}

/// How `verify` and the apply gate verify TDX quotes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct QuoteArgs {
    /// Verify each CVM's TDX quote with Intel's collateral from this PCCS: `phala`
    /// (pccs.phala.network), `intel` (Intel's PCS) or a URL. Without one the quote is not
    /// verified, and every verdict says so.
    #[arg(long, value_name = "URL", env = "TEEFORM_PCCS_URL")]
    pub pccs_url: Option<String>,
    /// Accept this TCB status too (repeatable). UpToDate passes; SWHardeningNeeded,
    /// ConfigurationNeeded and ConfigurationAndSWHardeningNeeded pass with a warning; any
    /// other (OutOfDate, Revoked, …) fails unless given here.
    #[arg(long, value_name = "STATUS")]
    pub allow_tcb_status: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// List the workspaces that hold a state; `*` marks the one in use.
    List,
    /// Print the workspace in use.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List resource addresses; `--long`: the table `teeform status` prints.
    List {
        /// The table of `teeform status` (status from the API, app id, compose hash, what apply
        /// would do), for those used to `ls -l`; `teeform status` has every planning flag.
        #[arg(long, short = 'l')]
        long: bool,
        /// With --long: the table as JSON.
        #[arg(long, requires = "long")]
        json: bool,
        /// With --long: variables for the plan behind the table.
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Show one resource as state records it.
    Show {
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Forget resources (the CVMs themselves are left alone).
    Rm {
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Move a CVM to another address in state (after renaming its key in the manifest); the
    /// CVM itself is left alone. A `moved:` entry in the manifest does the same at apply.
    Mv {
        /// Where state holds the CVM now, e.g. `cvm.web`.
        #[arg(value_parser = Address::parse)]
        source: Address,
        /// Where it should be, e.g. `cvm.frontend`.
        #[arg(value_parser = Address::parse)]
        destination: Address,
    },
    /// Record that the state belongs to the manifest named with `-f` (after renaming a
    /// manifest, or for a state made before teeform recorded its manifest).
    Bind,
    /// Repair a damaged local state: put back its last whole copy (`backup.json`).
    Recover {
        /// Keep the database as it is instead (every record must still read back) and seal it
        /// again: for a state directory you restored yourself and know to be complete.
        #[arg(long)]
        keep_current: bool,
    },
    /// Copy the state to another backend and verify the copy (e.g. `--to postgres`).
    Migrate {
        /// The backend to copy to; the source is the one in use (manifest or --backend).
        #[arg(long, value_enum, value_name = "KIND")]
        to: BackendArg,
        /// The workspace to copy into (default: the one in use, `--workspace`), e.g. a local
        /// state's `default` into PostgreSQL's `production`.
        #[arg(long, value_name = "NAME")]
        to_workspace: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve the simulated API until interrupted.
    Serve(Box<sim::ServeArgs>),
}

/// How `teeform graph` writes the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT (`teeform graph | dot -Tsvg > graph.svg`).
    Dot,
    /// A Mermaid flowchart (GitHub renders it in a ```mermaid block).
    Mermaid,
}

/// How a plan is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Human,
    Json,
    Markdown,
}

impl View {
    /// The view `--json` or `--markdown` asks for (`--json` first), else the human one.
    fn of(json: bool, markdown: bool) -> View {
        match (json, markdown) {
            (true, _) => View::Json,
            (false, true) => View::Markdown,
            (false, false) => View::Human,
        }
    }
}

/// Parses arguments, runs the command and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(code) => return ExitCode::from(code),
    };
    let g = &cli.global;
    let color = if g.no_color { ColorChoice::Never } else { g.color };
    let verbosity = match (g.quiet, g.verbose) {
        (true, _) => Verbosity::Quiet,
        (false, true) => Verbosity::Verbose,
        (false, false) => Verbosity::Normal,
    };
    let shell = Shell::new(color, verbosity);
    let cmd = CommandLine::new(&cli.global);
    init_tracing(verbosity);
    // State, saved plans and the simulator's data are nobody else's business.
    // SAFETY: umask only changes this process's default file mode.
    unsafe {
        libc::umask(0o077);
    }
    let code = match start(cli, &shell) {
        Ok(code) => code,
        Err(e) => {
            shell.error(&e, &cmd);
            e.exit_code()
        }
    };
    ExitCode::from(code)
}

/// Changes directory (`-C`), starts the async runtime and runs the command in it.
fn start(cli: Cli, shell: &Shell) -> error::CliResult {
    if let Some(dir) = &cli.global.chdir {
        std::env::set_current_dir(dir)
            .map_err(|e| CliError::new(format!("cannot change to directory {}: {e}", dir.display())))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(run(cli, shell.clone()));
    // Background tasks (the embedded simulator) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

/// Logging to stderr at `TEEFORM_LOG` (e.g. `debug`, `teeform=trace`), else with `-v` at
/// `teeform=debug`. Every line, from any crate (reqwest, hyper and alloy log through the
/// `log` bridge), goes through [`crate::redact`] on its way out.
fn init_tracing(verbosity: Verbosity) {
    let filter = match std::env::var("TEEFORM_LOG") {
        Ok(f) => f,
        Err(_) if verbosity == Verbosity::Verbose => "teeform=debug".to_string(),
        Err(_) => return,
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::redact::Redacting(std::io::stderr))
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// Parses the command line, Terraform's single-dash spellings read as teeform's
/// ([`terraform`]). A usage error is shown (with a hint of teeform's own instead of clap's
/// guesses at a flag) and is exit 1; help and version are exit 0.
fn parse(argv: Vec<std::ffi::OsString>) -> Result<Cli, u8> {
    let cmd = Cli::command();
    let shell = || Shell::new(ColorChoice::Auto, Verbosity::Normal);
    let args = match terraform::rewrite(argv, &cmd) {
        terraform::Rewritten::Args(a) => a,
        terraform::Rewritten::NoCounterpart { flag, hint } => {
            let e = CliError::new(format!("teeform has no counterpart of Terraform's `{flag}`")).hint(hint);
            shell().error(&e, &CommandLine::default());
            return Err(exit::ERROR);
        }
    };
    let e = match Cli::try_parse_from(&args) {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    // Help and version are successes; every usage error is exit 1 (2 means "changes").
    let ok = matches!(
        e.kind(),
        clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    match terraform::unknown_flag_hint(&args, &cmd, &e) {
        Some(hint) => {
            // clap's own tip guesses at any flag with a letter in common (`--target` → `--state`).
            let text = e.render().to_string();
            let kept: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("tip:")).collect();
            let sh = shell();
            sh.err_line(&format!(
                "{}
{} {hint}",
                kept.join("\n").trim_end(),
                sh.err_palette().cyan("hint:")
            ));
        }
        None => {
            let _ = e.print();
        }
    }
    Err(if ok { exit::OK } else { exit::ERROR })
}

async fn run(cli: Cli, shell: Shell) -> error::CliResult {
    let cmdline = CommandLine::new(&cli.global);
    // `sim serve` shuts its server down on a signal itself.
    if !matches!(cli.command, Command::Sim(_)) {
        signals::install(shell.clone(), cmdline);
    }
    let mut ctx = Ctx::new(cli.global.clone(), shell)?;
    let streams = match &cli.command {
        Command::Apply(a) => a.json,
        Command::Destroy { json, .. } => *json,
        Command::Plan { stream, .. } => *stream,
        _ => false,
    };
    if streams {
        ctx.stream = Some(std::sync::Arc::new(shared::stream::Stream::start(&ctx.shell)?));
    }
    let result = command(&ctx, cli.command).await;
    if let (Err(e), Some(s)) = (&result, &ctx.stream) {
        // The whole error as people read it: causes and hints.
        let _ = s.diagnostic(&e.message, &e.render(&crate::style::Palette::plain(), &ctx.cmdline));
    }
    result
}

/// Whether the command writes one JSON document on stdout (`--json`, not a stream of events).
fn writes_json_document(command: &Command) -> bool {
    match command {
        Command::Validate { json, .. }
        | Command::Show { json, .. }
        | Command::Verify { json, .. }
        | Command::Output { json, .. }
        | Command::Status { json, .. }
        | Command::State(StateCommand::Show { json, .. } | StateCommand::List { long: true, json, .. }) => *json,
        Command::Plan { json, stream, .. } => *json && !*stream,
        Command::Images(images::ImagesCommand::List { catalog }) => catalog.common().json,
        _ => false,
    }
}

/// A `--json` command that failed before writing its document writes an error document
/// instead, so stdout always parses: a manifest that did not load as `validate --json` writes
/// it (`{"valid": false, ...}`, nothing more on stderr); any other failure (API, state, chain)
/// as `{"errored": true, "diagnostics": [{"severity": "error", "message", "causes": [...],
/// "hints": [...]}]}`, with no registered credential in any string, and the error returned, so
/// stderr and the exit code are as without `--json`. A reader that went away gets nothing.
fn print_failed(ctx: &Ctx, e: error::CliError) -> error::CliResult {
    if !e.diagnostics.is_empty() {
        return validate::print_invalid(ctx, &e);
    }
    if e.kind == error::Kind::BrokenPipe {
        return Err(e);
    }
    let clean = |s: &str| crate::redact::text(s).into_owned();
    let causes: Vec<String> = e.causes().iter().map(|c| clean(c)).collect();
    let hints: Vec<String> = e.hints.iter().map(|h| clean(&h.render(&ctx.cmdline))).collect();
    let doc = serde_json::json!({
        "errored": true,
        "diagnostics": [{"severity": "error", "message": clean(&e.message), "causes": causes, "hints": hints}],
    });
    ctx.shell.print_json(&doc)?;
    Err(e)
}

async fn command(ctx: &Ctx, command: Command) -> error::CliResult {
    let json = writes_json_document(&command);
    match dispatch(ctx, command).await {
        Err(e) if json && !ctx.shell.printed_json() => print_failed(ctx, e),
        r => r,
    }
}

async fn dispatch(ctx: &Ctx, command: Command) -> error::CliResult {
    match command {
        Command::Validate { vars, json } => validate::run(ctx, &vars, json),
        Command::Plan { plan, out, detailed_exitcode, json, stream: _, markdown } => {
            plan::run(ctx, &plan, out.as_deref(), detailed_exitcode, View::of(json, markdown)).await
        }
        Command::Apply(args) => apply::run(ctx, &args).await,
        Command::Destroy { run, targets, auto_approve, json: _ } => {
            destroy::run(ctx, &run, &targets, auto_approve).await
        }
        Command::Show { plan_file, json, markdown } => {
            show::run(ctx, plan_file.as_deref(), View::of(json, markdown)).await
        }
        Command::Verify { addresses, json, quote } => verify::run(ctx, &addresses, json, &quote).await,
        Command::Output { name, json, raw, vars } => output::run(ctx, name.as_deref(), json, raw, &vars).await,
        Command::State(s) => match s {
            StateCommand::List { long: false, .. } => state_list::run(ctx).await,
            StateCommand::List { long: true, json, vars } => status::run(ctx, &PlanArgs::read_only(vars), json).await,
            StateCommand::Show { address, json } => state_show::run(ctx, &address, json).await,
            StateCommand::Rm { addresses } => state_rm::run(ctx, &addresses).await,
            StateCommand::Mv { source, destination } => state_mv::run(ctx, &source, &destination).await,
            StateCommand::Bind => state_bind::run(ctx).await,
            StateCommand::Recover { keep_current } => state_recover::run(ctx, keep_current).await,
            StateCommand::Migrate { to, to_workspace } => state_migrate::run(ctx, to, to_workspace.as_deref()).await,
        },
        Command::Import { address, id, lock_timeout } => import::run(ctx, &address, &id, lock_timeout).await,
        Command::ForceUnlock { id } => force_unlock::run(ctx, &id).await,
        Command::Schema => schema::run(ctx),
        Command::Workspace(WorkspaceCommand::List) => workspace::list(ctx).await,
        Command::Workspace(WorkspaceCommand::Show) => workspace::show(ctx),
        Command::Graph { vars, format } => graph::run(ctx, &vars, format),
        Command::Status { plan, json } => status::run(ctx, &plan, json).await,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "teeform", &mut script);
            ctx.shell.print(&String::from_utf8_lossy(&script))?;
            Ok(exit::OK)
        }
        Command::Sim(SimCommand::Serve(args)) => sim::serve(ctx, *args).await,
        Command::Debug(cmd) => debug::run(&ctx.shell, cmd),
        Command::Images(cmd) => images::run(ctx, cmd).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed_and_every_command_explains_itself() {
        let cli = super::Cli::command();
        cli.clone().debug_assert();
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&cli, "teeform", &mut missing);
        assert!(missing.is_empty(), "commands without help text: {missing:?}");
    }
}
