//! The `steward` command line: parses arguments, opens the data directory (or reaches the
//! running server), calls the hub as the built-in local admin, and prints results.
//!
//! Layout:
//! - `args`: the clap definitions.
//! - `output`: the only place that writes to stdout.
//! - `commands`: one function per command.
//! - `serve`: the server and demo runners (tokio, signals, graceful shutdown).
//! - `client`: the small HTTP client used when a server holds the directory.

mod args;
mod audit_cmd;
mod client;
mod commands;
mod consent_cmd;
mod import_cmd;
mod interaction_cmd;
mod output;
mod recipients_cmd;
mod request_cmd;
mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use hub::keys::Unlock;
use hub::Hub;

pub use args::Cli;
use output::Output;

/// Exit codes, documented in the README.
pub mod exit {
    /// Something failed that is not covered below.
    pub const FAILURE: u8 = 1;
    /// Bad command-line usage (clap).
    pub const USAGE: u8 = 2;
    /// No such subject, user or file; or the subject was erased.
    pub const NOT_FOUND: u8 = 3;
    /// Input rejected (invalid field, malformed JSON).
    pub const INVALID: u8 = 4;
    /// The data directory is held by a running server.
    pub const IN_USE: u8 = 5;
    /// Cannot unseal, not initialised, or authentication failed.
    pub const KEYS: u8 = 6;
    /// The principal may not do this.
    pub const FORBIDDEN: u8 = 7;
    /// A conflict: the directory exists, the record changed, the name is taken.
    pub const CONFLICT: u8 = 8;
    /// An import finished, but some rows were refused (the report names them and why).
    pub const ROWS_REFUSED: u8 = 9;
    /// The store is damaged: stored bytes failed their checksum or do not parse.
    pub const STORAGE: u8 = 10;
}

/// An outcome already printed in full that only sets the exit code.
#[derive(Debug, thiserror::Error)]
#[error("exit code {0}")]
pub(crate) struct Quiet(pub(crate) u8);

/// Runs the CLI and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let out = Output {
        json: cli.global.json,
    };
    match commands::run(cli, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(q) = err.downcast_ref::<Quiet>() {
                return ExitCode::from(q.0);
            }
            let (code, exit) = classify(&err);
            out.error(code, &format!("{err:#}"));
            ExitCode::from(exit)
        }
    }
}

/// The exit code of each kind of hub error (the hub's own, or the same kind answered by a
/// server); the one place the CLI maps them.
fn exit_for(kind: hub::ErrorKind) -> u8 {
    use hub::ErrorKind as K;
    match kind {
        K::NotFound | K::Erased => exit::NOT_FOUND,
        K::Invalid | K::BadRequest | K::PolicyInvalid => exit::INVALID,
        K::InUse => exit::IN_USE,
        K::CannotUnseal | K::NotInitialised | K::Unauthenticated => exit::KEYS,
        K::Forbidden | K::ConsentRequired => exit::FORBIDDEN,
        K::Conflict | K::AlreadyExists => exit::CONFLICT,
        K::StorageDamaged | K::StoreUnavailable => exit::STORAGE,
        K::StoreRefused => exit::KEYS,
        K::Integrity | K::AuditFailure | K::BackupInvalid | K::Internal => exit::FAILURE,
    }
}

fn classify(err: &anyhow::Error) -> (&'static str, u8) {
    if let Some(e) = err.downcast_ref::<hub::Error>() {
        return (e.code(), exit_for(e.kind()));
    }
    if let Some(e) = err.downcast_ref::<client::RemoteError>() {
        // A server of another version may answer a code this one does not know.
        return match hub::ErrorKind::from_code(&e.code) {
            Some(kind) => (kind.code(), exit_for(kind)),
            None => ("failed", exit::FAILURE),
        };
    }
    if let Some(u) = err.downcast_ref::<UsageError>() {
        return (u.code, exit::INVALID);
    }
    ("failed", exit::FAILURE)
}

/// A mistake in how the command was used that clap cannot see (bad JSON on stdin...).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct UsageError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

pub(crate) fn usage(code: &'static str, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError {
        code,
        message: message.into(),
    })
}

/// Parses a subject or request id given on the command line. The message does not repeat
/// what was typed: a mistyped id is sometimes an email address or a name.
pub(crate) fn parse_id(raw: &str) -> anyhow::Result<domain::SubjectId> {
    raw.parse().map_err(|_| {
        usage(
            "bad_id",
            "that is not a Steward id: ids are the 26 letters and digits Steward printed \
             (for example by `subject add` or `request open`)",
        )
    })
}

/// The data directory from `--data` / `STEWARD_DATA`.
pub(crate) fn data_dir(global: &args::Global) -> anyhow::Result<PathBuf> {
    global.data.clone().ok_or_else(|| {
        usage(
            "missing_data_dir",
            "no data directory given: pass --data DIR or set STEWARD_DATA",
        )
    })
}

/// How to unseal `dir`: `--identity`, then `STEWARD_IDENTITY` (both via clap), then
/// `--passphrase-file`, then the identity file `init` recorded.
pub(crate) fn unlock_for(dir: &Path, global: &args::Global) -> anyhow::Result<Unlock> {
    if let Some(id) = &global.identity {
        return Ok(Unlock::Identity(id.clone()));
    }
    if let Some(p) = &global.passphrase_file {
        return Ok(Unlock::Passphrase(
            hub::keys::read_passphrase_file(p).map_err(hub::Error::from)?,
        ));
    }
    let info = hub::keys::read_seal_info(dir).map_err(hub::Error::from)?;
    match (info.method.as_str(), info.identity_path) {
        ("x25519", Some(path)) => Ok(Unlock::Identity(path)),
        ("passphrase", _) => Err(hub::Error::cannot_unseal(
            "this data directory is sealed with a passphrase: give --passphrase-file FILE or set STEWARD_PASSPHRASE_FILE",
        )
        .into()),
        _ => Err(hub::Error::cannot_unseal(
            "no identity file recorded: give --identity FILE or set STEWARD_IDENTITY",
        )
        .into()),
    }
}

/// Opens the data directory's hub.
pub(crate) fn open_hub(global: &args::Global) -> anyhow::Result<Hub> {
    let dir = data_dir(global)?;
    let unlock = unlock_for(&dir, global)?;
    Ok(Hub::open(&dir, &unlock)?)
}

/// Who the command acts as: the user of `--token` / `STEWARD_TOKEN`, or the built-in local
/// admin (whoever can unseal the directory holds every key anyway).
pub(crate) fn actor_for(hub: &Hub, global: &args::Global) -> anyhow::Result<hub::Actor> {
    match &global.token {
        None => Ok(hub.local_actor()),
        Some(token) => match hub.authenticate(token) {
            Ok(principal) => Ok(hub::Actor {
                principal,
                channel: hub::Channel::Cli,
                request_id: None,
            }),
            Err(e) => {
                hub.audit_auth_failure("cli", None)?;
                Err(e.into())
            }
        },
    }
}

/// Sets up logging to stderr. `STEWARD_LOG` (or `RUST_LOG`) overrides the default level.
pub(crate) fn init_logging(default: &str) {
    let filter = std::env::var("STEWARD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
