//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Steward: a privacy-first constituent data hub for nonprofits.
#[derive(Debug, Parser)]
#[command(name = "steward", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The data directory.
    #[arg(long, global = true, env = "STEWARD_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The age identity file that unseals the data directory (default: the one `init` recorded).
    #[arg(long, global = true, env = "STEWARD_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// A file holding the passphrase, for directories sealed with a passphrase.
    #[arg(
        long,
        global = true,
        env = "STEWARD_PASSPHRASE_FILE",
        value_name = "FILE"
    )]
    pub passphrase_file: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Act as the user this API token belongs to (default: the built-in local admin).
    #[arg(long, global = true, env = "STEWARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new data directory with a fresh master secret sealed with age.
    Init(InitArgs),
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Create (or reuse) a demo directory with 1,000 synthetic constituents and serve it.
    Demo(DemoArgs),
    /// Add, show, find, update, erase and list subjects.
    #[command(subcommand)]
    Subject(SubjectCmd),
    /// Manage users and their API tokens.
    #[command(subcommand)]
    Users(UsersCmd),
    /// Key management.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Encrypted backups.
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Policy files.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// The tamper-evident audit log: verify, query, export, checkpoints.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The consent ledger: record, withdraw, state, history, explain.
    #[command(subcommand)]
    Consent(ConsentCmd),
    /// Export the subjects a purpose may process, with that purpose's fields only.
    Export(ExportArgs),
    /// Subject-rights requests: open, list, move along, fulfil.
    #[command(subcommand)]
    Request(RequestCmd),
    /// Retention: end legal holds past their date, purge old request records.
    #[command(subcommand)]
    Retention(RetentionCmd),
    /// Import a legacy CRM export (`steward import FILE --profile P`), or inspect, list,
    /// show and undo imports.
    Import(ImportArgs),
    /// The review queue of likely duplicates: list, accept (merge), reject.
    #[command(subcommand)]
    Review(ReviewCmd),
    /// Merge subject B into subject A (`steward merge A B`), or undo a merge.
    Merge(MergeArgs),
    /// Record matching: explain how two subjects score.
    #[command(subcommand)]
    Match(MatchCmd),
    /// Records of processing activities (GDPR Art. 30), from the policy files.
    #[command(subcommand)]
    Ropa(RopaCmd),
    /// Interactions with constituents: calls, emails, meetings, letters, events, notes, tasks.
    #[command(subcommand)]
    Interaction(InteractionCmd),
    /// Donor analytics under the `analytics` purpose: retention, FEP gains and losses,
    /// LYBUNT/SYBUNT, RFM.
    #[command(subcommand)]
    Analytics(AnalyticsCmd),
    /// The register of recipients (organisations data is disclosed to): add, list, show,
    /// update, disable, enable, and `of SUBJECT` (who received a person's data).
    #[command(subcommand)]
    Recipients(RecipientsCmd),
    /// Art. 19 notifications owed to recipients: pending tasks, done, deliver now.
    #[command(subcommand)]
    Notify(NotifyCmd),
}

/// What a recipient may receive and where it is (each optional on update).
#[derive(Debug, Args, Default)]
pub struct RecipientArgs {
    /// processor (acts on your instructions) or controller.
    #[arg(long)]
    pub role: Option<String>,
    /// Purposes whose segments it may receive, comma-separated (default: any).
    #[arg(long, value_delimiter = ',')]
    pub purposes: Option<Vec<String>>,
    /// Field groups it may receive, comma-separated: identity, contact, financial, special,
    /// profile, interactions, interaction_notes (default: those of the purpose).
    #[arg(long, value_delimiter = ',')]
    pub groups: Option<Vec<String>>,
    /// The legal basis of the disclosure, in words.
    #[arg(long = "basis")]
    pub legal_basis: Option<String>,
    /// The contract or data processing agreement's reference.
    #[arg(long)]
    pub contract: Option<String>,
    /// Where it processes the data (ISO 3166 alpha-2: GB, IE, US...).
    #[arg(long)]
    pub country: Option<String>,
    /// Webhook endpoint for its notifications (https; "" removes it).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// A file holding its Standard Webhooks signing secret (`whsec_` + base64). Without one,
    /// an endpoint gets a generated secret, printed once.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Allow plain HTTP to a loopback address (a local receiver, tests).
    #[arg(long)]
    pub allow_loopback: bool,
    /// Allow private and link-local addresses (a receiver inside your network).
    #[arg(long)]
    pub allow_private: bool,
}

#[derive(Debug, Subcommand)]
pub enum RecipientsCmd {
    /// Register a recipient.
    Add {
        name: String,
        #[command(flatten)]
        fields: RecipientArgs,
    },
    /// The register.
    List,
    /// One recipient.
    Show { name: String },
    /// Change a recipient (what the flags name).
    Update {
        name: String,
        #[command(flatten)]
        fields: RecipientArgs,
        /// Generate a new signing secret (printed once); the old one signs for another day.
        #[arg(long, conflicts_with = "secret_file")]
        rotate_secret: bool,
        /// Take back the loopback allowance.
        #[arg(long, conflicts_with = "allow_loopback")]
        deny_loopback: bool,
        /// Take back the private-address allowance.
        #[arg(long, conflicts_with = "allow_private")]
        deny_private: bool,
    },
    /// Disable a recipient: exports to it are refused, its notifications become tasks.
    Disable {
        name: String,
        /// Why (one line).
        #[arg(long)]
        reason: String,
    },
    /// Enable a disabled recipient again.
    Enable { name: String },
    /// Who received a subject's data (Art. 15(1)(c), Art. 19): organisations, purposes,
    /// field groups, dates.
    Of { id: String },
}

#[derive(Debug, Subcommand)]
pub enum NotifyCmd {
    /// Notifications a person must act on: recipients without an endpoint, failed deliveries.
    Pending {
        /// Also those the delivery worker is still sending.
        #[arg(long)]
        all: bool,
    },
    /// Mark a notification done: you told the recipient, as the note says.
    Done {
        id: String,
        /// How they were told (a ticket, a letter's reference); one line.
        #[arg(long)]
        note: String,
    },
    /// Send the webhook notifications due now (the server does this every second).
    Deliver,
}

#[derive(Debug, Subcommand)]
pub enum InteractionCmd {
    /// Add an interaction from a JSON object on stdin (`kind` required; `occurred_at`
    /// defaults to now, `staff` to you). Several --subject: one interaction they all took
    /// part in (each keeps a copy under its own key).
    Add {
        /// A participant (repeat for several).
        #[arg(long = "subject", required = true, value_name = "ID")]
        subjects: Vec<String>,
    },
    /// List a subject's interactions, oldest first.
    List {
        #[arg(long, value_name = "ID")]
        subject: String,
        /// Only if this purpose may use interactions and the consent gate allows it.
        #[arg(long)]
        purpose: Option<String>,
    },
    /// Show one interaction.
    Show { id: String },
    /// Update an interaction from a JSON object on stdin (null removes a field).
    Update {
        id: String,
        /// Refuse if the interaction's version is not this one.
        #[arg(long)]
        if_version: Option<u32>,
    },
    /// Import CiviCRM activities or NPSP tasks (CSV), linked to subjects by the external id
    /// their contacts were imported with; refused rows are listed by number and code.
    Import {
        file: PathBuf,
        /// civicrm or npsp (default: detected from the columns).
        #[arg(long)]
        profile: Option<String>,
        /// Read and link every row, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Mark a task done.
    Complete {
        id: String,
        /// What came of it.
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        if_version: Option<u32>,
    },
}

/// The period and filters of an analysis.
#[derive(Debug, Args)]
pub struct AnalyticsArgs {
    /// A calendar year, compared with the year before.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub year: Option<i32>,
    /// First day of the period (YYYY-MM-DD), compared with the period of the same length
    /// before it.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Last day of the period, included.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Only gifts to this fund.
    #[arg(long)]
    pub fund: Option<String>,
    /// Only gifts of this campaign.
    #[arg(long)]
    pub campaign: Option<String>,
    /// Only gifts of this appeal.
    #[arg(long)]
    pub appeal: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AnalyticsCmd {
    /// Donor retention (FEP): overall, new-donor and repeat-donor.
    Retention(AnalyticsArgs),
    /// The FEP table: gains and losses in donors and money.
    Fep {
        #[command(flatten)]
        args: AnalyticsArgs,
        /// A differentially private release of the donor counts instead, spending this much
        /// of the analytics purpose's privacy budget (above 0, at most 1).
        #[arg(long)]
        epsilon: Option<f64>,
    },
    /// LYBUNT and SYBUNT donors.
    Lapsed {
        #[command(flatten)]
        args: AnalyticsArgs,
        /// Periods to look back for SYBUNT.
        #[arg(long, default_value_t = 4)]
        lookback: u32,
        /// List the subjects' ids too (roles that may read gifts).
        #[arg(long)]
        list: bool,
    },
    /// RFM quintiles, average gift, revenue per donor, lifetime value.
    Rfm(AnalyticsArgs),
    /// Stewardship: retention of last period's donors who were contacted (an outbound call,
    /// email, letter, meeting...) against those who were not.
    Stewardship(AnalyticsArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub cmd: Option<ImportCmd>,
    /// The file to import (CSV, any delimiter, UTF-8 or Windows-1252).
    pub file: Option<PathBuf>,
    /// generic, civicrm, npsp, mailchimp, bloomerang or donorperfect (default: detected).
    #[arg(long)]
    pub profile: Option<String>,
    /// A mapping file (TOML) that overrides or extends the profile.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Work out and print what would happen; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write one line per input row here: row,outcome,subject_id,matched_subject_id,error_code.
    #[arg(long, value_name = "REPORT.csv")]
    pub report: Option<PathBuf>,
    /// Merge without asking at or above this match probability.
    #[arg(long, default_value_t = 0.99)]
    pub auto_merge_above: f64,
    /// Put in the review queue at or above this match probability.
    #[arg(long, default_value_t = 0.5)]
    pub review_above: f64,
    /// Import the good rows even when more than half of the file's rows are refused (without
    /// it such an import stops before writing anything).
    #[arg(long)]
    pub accept_errors: bool,
    /// How to read dates like 03/04/1980 in every date column: day-first or month-first.
    /// Without it each column's order is worked out from its values (13/04/1980 reads only
    /// day-first), then the profile's habit, then the schema's date_order.
    #[arg(long, value_name = "ORDER")]
    pub date_order: Option<String>,
    /// Print progress as plain lines on stderr (`progress stage=write done=8192 total=30000`),
    /// for logs and scripts; on a terminal a progress line is shown anyway.
    #[arg(long)]
    pub progress_lines: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// Show how a file would be read: dialect, encoding, profile, column mapping, and whether
    /// the first rows' values are valid (never the values). Writes nothing.
    Inspect {
        file: PathBuf,
        /// generic, civicrm, npsp, mailchimp, bloomerang or donorperfect (default: detected).
        #[arg(long)]
        profile: Option<String>,
        /// A mapping file (TOML) that overrides or extends the profile.
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Rows to check.
        #[arg(long, default_value_t = 5)]
        rows: usize,
    },
    /// Undo an import: subjects it created go, subjects it changed get their prior record back.
    Undo { id: String },
    /// List imports.
    List,
    /// Show an import's summary (and write its report with --report).
    Show {
        /// The id (as printed when it was created).
        id: String,
        #[arg(long, value_name = "REPORT.csv")]
        report: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReviewCmd {
    /// Open review items, most likely duplicates first.
    List {
        /// Include decided items.
        #[arg(long)]
        all: bool,
    },
    /// The two subjects are one person: merge the second into the first.
    Accept { id: String },
    /// A household proposal: these people live together; link them into one household.
    Link {
        /// The proposal's id.
        #[arg(required_unless_present = "all_households")]
        id: Option<String>,
        /// Link every open household proposal (each one is decided and audited on its own).
        #[arg(long, conflicts_with = "id")]
        all_households: bool,
    },
    /// The two subjects are different people (or, for a household proposal, not one
    /// household).
    Reject { id: String },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MergeArgs {
    #[command(subcommand)]
    pub cmd: Option<MergeCmd>,
    /// The subject to keep.
    pub keep: Option<String>,
    /// The subject merged into it.
    pub gone: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MergeCmd {
    /// Undo a merge (both subjects as they were) or a split (the record back in its subject).
    Undo { id: String },
    /// Take one source record back out of a subject as a subject of its own (a wrong merge:
    /// see `steward match check`). Its consent events go with it; gifts stay. Undo with
    /// `steward merge undo ID`.
    Split {
        /// The subject.
        subject: String,
        /// The record's number among the subject's source records (`steward match sources
        /// SUBJECT` lists them; `match check` names the two that contradict each other).
        #[arg(long)]
        record: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum MatchCmd {
    /// How two subjects score, field by field (levels and weights, never values).
    Explain { a: String, b: String },
    /// Store blocking keys for every subject again, dropping keys no longer kept (needed
    /// once after an upgrade that changed which keys are kept, or for subjects created
    /// before imports stored them, so that imports find them by name and address too).
    Reindex,
    /// List stored subjects whose merged records cannot all be one person (ids, record
    /// numbers and reasons; never values), with the repair for each.
    Check,
    /// A subject's source records, numbered: where each came from and which fields it holds.
    Sources { subject: String },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCmd {
    /// Run the retention sweep now.
    Run {
        /// Report what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Judge as of this day (YYYY-MM-DD) instead of today.
        #[arg(long)]
        now: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RopaCmd {
    /// Write the records of processing as Markdown or JSON.
    Export {
        /// markdown or json.
        #[arg(long, default_value = "markdown")]
        format: String,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Use the policy files in this folder instead of the data directory's.
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RequestCmd {
    /// Open a request; prints its id and deadline.
    Open {
        /// access, erasure, rectification, restriction, objection, portability, opt-out.
        #[arg(long = "type")]
        kind: String,
        /// The subject's id (as for `subject show ID`).
        #[arg(required_unless_present = "subject", conflicts_with = "subject")]
        id: Option<String>,
        /// The subject's id, as a flag (the older spelling).
        #[arg(long)]
        subject: Option<String>,
        /// gdpr, uk-gdpr or ccpa.
        #[arg(long)]
        jurisdiction: String,
        /// Day of receipt, YYYY-MM-DD (default today).
        #[arg(long)]
        received: Option<String>,
    },
    /// Open requests, soonest deadline first.
    List {
        /// Only those due within this many days, as in 7d.
        #[arg(long)]
        due_within: Option<String>,
    },
    /// One request with its history.
    Show { id: String },
    /// Move a request along: verify, start, extend, pause, resume, complete, refuse.
    Update {
        /// The id (as printed when it was created).
        id: String,
        /// verify, start, extend, pause, resume, complete or refuse.
        #[arg(long)]
        action: String,
        /// Required to extend or refuse: what the subject is told.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Write the access package of an access or portability request.
    /// Fulfils a verified, started request: writes an access package (access, portability)
    /// or erases the subject (erasure), and records what it produced.
    Fulfil {
        /// The request's id.
        id: String,
        /// Where: a folder, a `.zip` or `.tar` file, or (with --encrypt-to or
        /// --encrypt-passphrase-file) an age file. Never overwritten without --force. For an
        /// erasure request: where to write the certificate as JSON (optional).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite what is already at --out.
        #[arg(long)]
        force: bool,
        /// Release the package before the request is verified and started, for this reason
        /// (a DPO only; audited and kept in the request's history).
        #[arg(long = "override-reason")]
        override_reason: Option<String>,
        /// Encrypt to this age recipient (age1...): one file the stock age tool opens.
        #[arg(long)]
        encrypt_to: Option<String>,
        /// Encrypt with the passphrase in this file instead (age scrypt).
        #[arg(long = "encrypt-passphrase-file", conflicts_with = "encrypt_to")]
        encrypt_passphrase_file: Option<PathBuf>,
        /// Encrypt with a new random passphrase, printed once: send it to the person by
        /// another channel (a phone call, a text), never with the file. Once decrypted it is
        /// a zip any computer opens (a tar if --out is named `X.tar.age`).
        #[arg(
            long = "generate-passphrase",
            conflicts_with_all = ["encrypt_to", "encrypt_passphrase_file"]
        )]
        generate_passphrase: bool,
    },
}

/// What to record in the consent ledger.
#[derive(Debug, Args)]
pub struct ConsentEventArgs {
    /// The subject's id (as for `subject show ID`).
    #[arg(required_unless_present = "subject", conflicts_with = "subject")]
    pub id: Option<String>,
    /// The subject's id, as a flag (the older spelling).
    #[arg(long)]
    pub subject: Option<String>,
    /// The purpose, from policies/purposes.toml.
    #[arg(long)]
    pub purpose: String,
    /// Where it came from: a form name, a campaign code, `email-link`...
    #[arg(long)]
    pub source: String,
    /// When it took effect: an RFC 3339 time or a date, YYYY-MM-DD (default now).
    #[arg(long)]
    pub at: Option<String>,
    /// How it was collected: form, phone, paper, email-link... (default cli: recorded here).
    #[arg(long)]
    pub method: Option<String>,
    /// The law it was collected under: gdpr, uk-gdpr, ccpa, au-privacy-act... (default:
    /// `jurisdiction` in policies/organisation.toml).
    #[arg(long)]
    pub jurisdiction: Option<String>,
    #[arg(long)]
    pub notice_version: Option<String>,
    #[arg(long)]
    pub notice_hash: Option<String>,
    /// A reference to evidence kept elsewhere (document id), never its content.
    #[arg(long)]
    pub evidence: Option<String>,
    /// When the consent stops counting: an RFC 3339 time or a date, YYYY-MM-DD.
    #[arg(long)]
    pub expires: Option<String>,
    /// The field used to contact, for channel purposes (e.g. email).
    #[arg(long)]
    pub contact_point: Option<String>,
    /// consent, soft_opt_in or charitable_soft_opt_in (email and SMS).
    #[arg(long)]
    pub pecr_basis: Option<String>,
    /// A condition of a soft opt-in (repeat for each).
    #[arg(long)]
    pub pecr_condition: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConsentCmd {
    /// Record an event: given, refused, withdrawn, expired, objected, renewed, restricted, unrestricted.
    Record {
        #[arg(long)]
        event: String,
        #[command(flatten)]
        what: ConsentEventArgs,
    },
    /// Record a withdrawal (the same as `record --event withdrawn`).
    Withdraw {
        #[command(flatten)]
        what: ConsentEventArgs,
    },
    /// What every purpose may do with a subject now (or --at).
    State {
        /// The subject's id (as for `subject show ID`).
        #[arg(required_unless_present = "subject", conflicts_with = "subject")]
        id: Option<String>,
        /// The subject's id, as a flag (the older spelling).
        #[arg(long)]
        subject: Option<String>,
        /// Judge at this time (RFC 3339 or YYYY-MM-DD) instead of now.
        #[arg(long)]
        at: Option<String>,
    },
    /// A subject's whole ledger.
    History {
        /// The subject's id (as for `subject show ID`).
        #[arg(required_unless_present = "subject", conflicts_with = "subject")]
        id: Option<String>,
        /// The subject's id, as a flag (the older spelling).
        #[arg(long)]
        subject: Option<String>,
    },
    /// Why a purpose may or may not process a subject, with the deciding event.
    Explain {
        /// The subject's id.
        subject: String,
        purpose: String,
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The purpose whose segment to export.
    #[arg(long)]
    pub purpose: String,
    /// jsonl or csv.
    #[arg(long, default_value = "jsonl")]
    pub format: String,
    /// Write here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Decide as of this time (default now).
    #[arg(long)]
    pub at: Option<String>,
    /// Encrypt the file to this age recipient (age1...); needs --out.
    #[arg(long, requires = "out")]
    pub encrypt_to: Option<String>,
    /// Encrypt the file with the passphrase in this file (age scrypt); needs --out.
    #[arg(
        long = "encrypt-passphrase-file",
        requires = "out",
        conflicts_with = "encrypt_to"
    )]
    pub encrypt_passphrase_file: Option<PathBuf>,
    /// Export to this registered recipient: only what the register allows it, each row with
    /// its reference for the person (`ref`), and recorded for Art. 19 notices.
    #[arg(long)]
    pub recipient: Option<String>,
}

/// Filters shared by `audit query` and `audit export`.
#[derive(Debug, Args)]
pub struct AuditFilter {
    /// Events about this subject id.
    #[arg(long)]
    pub subject: Option<String>,
    /// Events by this user (name or principal id).
    #[arg(long)]
    pub actor: Option<String>,
    /// An action (`read.subject`), or its verb (`read`, `export`) or object (`subject`).
    #[arg(long)]
    pub action: Option<String>,
    /// ok, denied or error.
    #[arg(long)]
    pub outcome: Option<String>,
    /// At or after this time (YYYY-MM-DD or RFC 3339, UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// Before this time (YYYY-MM-DD or RFC 3339, UTC).
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Recompute the hash chain and check every checkpoint; exit 0 when intact, 1 when not, 10
    /// when the store itself is damaged (unreadable bytes: restore from a backup).
    Verify {
        /// Also check against a checkpoint exported earlier (detects truncation and rollback).
        #[arg(long, value_name = "CHECKPOINT.json")]
        against: Option<PathBuf>,
        /// Read the segments moved away by `audit archive` from this directory first, so the
        /// whole log is verified from its first event.
        #[arg(long, value_name = "DIR")]
        archive: Option<PathBuf>,
    },
    /// Verify an archive made by `audit archive` on its own, without the data directory:
    /// each segment's chain and signed end, and that each continues the one before.
    VerifyArchive {
        /// The archive directory.
        dir: PathBuf,
        /// A checkpoint exported from the same log (`audit checkpoint export`): its public key
        /// is the one the archive must be signed with.
        #[arg(long, value_name = "CHECKPOINT.json")]
        checkpoint: PathBuf,
    },
    /// Move the log's sealed (full, compressed) segments to DIR, e.g. on other storage; the
    /// live log then starts after them, and `audit verify --archive DIR` reads them back.
    Archive {
        /// Where the segments go (created if missing; segments already there are kept).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
    /// Events, filtered, a page at a time.
    Query {
        #[command(flatten)]
        filter: AuditFilter,
        /// Events after this sequence number (paging).
        #[arg(long)]
        after: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Every matching event, as JSON Lines or CSV.
    Export {
        #[command(flatten)]
        filter: AuditFilter,
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Signed checkpoints.
    #[command(subcommand)]
    Checkpoint(CheckpointCmd),
}

#[derive(Debug, Subcommand)]
pub enum CheckpointCmd {
    /// Sign a checkpoint of the log as it is now and write it (JSON) for off-host keeping.
    Export {
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Seal with a passphrase read from this file instead of an identity file.
    #[arg(long, value_name = "FILE", conflicts_with = "identity")]
    pub passphrase_file: Option<PathBuf>,
    /// Copy policy files from this folder (default: ./policies if present, else built-in).
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Where the data lives: `sled` in the data directory (the default), or a PostgreSQL
    /// database shared by several servers (`postgres://USER@HOST:PORT/DB`, which must be
    /// empty). The directory keeps the sealed master secret, the policies and this choice.
    #[arg(long, value_name = "URL", env = "STEWARD_STORE")]
    pub store: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "STEWARD_ADDR")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Limits of the HTTP server.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Requests per second allowed per API token (0 = no limit).
    #[arg(long, default_value_t = 100, env = "STEWARD_RATE_LIMIT")]
    pub rate_limit: u32,
    /// Requests a token may make in a burst above the steady rate.
    #[arg(long, default_value_t = 200, env = "STEWARD_RATE_BURST")]
    pub rate_burst: u32,
    /// Failed authentications a source address may make per minute before it is answered
    /// 429 (audited once per minute, not per request); 0 = no limit.
    #[arg(long, default_value_t = 30, env = "STEWARD_AUTH_FAILURES_PER_MINUTE")]
    pub auth_failures_per_minute: u32,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 32, env = "STEWARD_BODY_LIMIT_MIB")]
    pub body_limit_mib: usize,
    /// Sign an audit checkpoint every this many events...
    #[arg(long, default_value_t = 1000, env = "STEWARD_AUDIT_CHECKPOINT_EVERY")]
    pub checkpoint_every: u64,
    /// ...or when this many seconds have passed since the last one (checked as events arrive).
    #[arg(long, default_value_t = 60, env = "STEWARD_AUDIT_CHECKPOINT_SECONDS")]
    pub checkpoint_seconds: u64,
    /// Seal (compress) the audit log's active segment file once it holds this many KiB.
    #[arg(long, default_value_t = 4096, env = "STEWARD_AUDIT_SEGMENT_KIB")]
    pub audit_segment_kib: u64,
}

impl LimitArgs {
    /// The audit checkpoint schedule these options describe.
    pub fn audit(&self) -> hub::audit_log::AuditConfig {
        hub::audit_log::AuditConfig {
            checkpoint_every: self.checkpoint_every.max(1),
            checkpoint_seconds: self.checkpoint_seconds,
            seal_bytes: self.audit_segment_kib.max(1) * 1024,
        }
    }

    /// The server configuration these options describe.
    pub fn config(&self) -> server::ServerConfig {
        server::ServerConfig {
            body_limit: self.body_limit_mib * 1024 * 1024,
            rate_per_second: self.rate_limit,
            rate_burst: self.rate_burst,
            auth_failures_per_minute: self.auth_failures_per_minute,
            ..server::ServerConfig::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "STEWARD_ADDR")]
    pub addr: SocketAddr,
    /// Number of synthetic constituents.
    #[arg(long, default_value_t = 1000)]
    pub size: usize,
    /// Load the data and exit without serving (for scripts and tests).
    #[arg(long)]
    pub no_serve: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Subcommand)]
pub enum SubjectCmd {
    /// Add a subject from one JSON object (field name → value) on stdin.
    Add {
        /// individual, household or organisation (overrides "kind" in the JSON).
        #[arg(long)]
        kind: Option<String>,
    },
    /// Show a subject's fields.
    Show {
        /// The id (as printed when it was created).
        id: String,
        /// Only if the consent gate allows this purpose, and only its fields.
        #[arg(long)]
        purpose: Option<String>,
    },
    /// Find subjects by exact email, phone or external id.
    Find {
        #[arg(long, group = "by")]
        email: Option<String>,
        #[arg(long, group = "by")]
        phone: Option<String>,
        #[arg(long, group = "by")]
        external_id: Option<String>,
        /// A family name (case, accents, spaces and hyphens set aside).
        #[arg(long, group = "by")]
        family_name: Option<String>,
    },
    /// Update fields from a JSON object on stdin (null removes a field).
    Update {
        /// The id (as printed when it was created).
        id: String,
        /// Refuse if the subject's version is not this one.
        #[arg(long)]
        if_version: Option<u32>,
    },
    /// Erase subjects by destroying their data keys (several ids: one batch).
    Erase {
        /// The subjects' ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Do not ask for confirmation (scripts; without a terminal nothing is asked).
        #[arg(long)]
        yes: bool,
    },
    /// Print again the erasure certificate kept for an erased subject (text, or --json).
    Certificate {
        /// The erased subject's id.
        id: String,
    },
    /// List subject ids in creation order, a page at a time.
    List {
        /// The `next` of the page before.
        #[arg(long)]
        after: Option<String>,
        /// Ids per page, 1 to 1000.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// List a subject's gifts.
    Gifts { id: String },
    /// A subject's timeline: gifts, interactions, consent events, requests and merges.
    Timeline { id: String },
    /// What a legal hold keeps of an erased subject, and until when.
    Held { id: String },
    /// Recipients a subject's data was disclosed to (Art. 19 notices); --add records one.
    Recipients {
        /// The id (as printed when it was created).
        id: String,
        /// An organisation the data was disclosed to.
        #[arg(long)]
        add: Option<String>,
        /// Why (a purpose name).
        #[arg(long, requires = "add")]
        purpose: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// Add a user and print its API token (shown once); with --password-file the user can
    /// also sign in to the console.
    Add {
        name: String,
        #[arg(long)]
        role: String,
        /// A file whose first line is the user's console password (12 to 256 characters).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Set a user's console password from a file (first line); ends the user's console
    /// sessions and lifts a lock after failed sign-ins.
    Password {
        name: String,
        /// A file whose first line is the new password (12 to 256 characters).
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
    },
    /// List users.
    List,
    /// Revoke a user's token.
    Revoke { name: String },
    /// Change a user's role.
    Role { name: String, role: String },
    /// Issue a new token for a user (the old one stops working).
    Token { name: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Rotate the key-encryption key; resumes an interrupted rotation.
    Rotate {
        /// Data keys rewrapped per durable step.
        #[arg(long, default_value_t = 4096)]
        batch_size: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Write an encrypted snapshot of the data directory (through the server if one runs).
    /// With a server holding the directory, give an admin's API token with --token.
    Create { file: PathBuf },
    /// Restore a snapshot into an empty directory given by --data.
    Restore {
        file: PathBuf,
        /// The live directory's erasure journal (DIR/erasures.journal): erasures made after
        /// the backup are applied again before the restored directory serves anything.
        #[arg(long, value_name = "FILE", conflicts_with = "checkpoint")]
        journal: Option<PathBuf>,
        /// A checkpoint exported with `steward audit checkpoint export --out FILE` after the backup
        /// and kept off-host: the erasures it lists are applied again (for when the live
        /// directory, and its journal, are lost).
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Validate the policy files (the data directory's, or those in --dir).
    Check {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}
