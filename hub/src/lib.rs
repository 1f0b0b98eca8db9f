//! The one door: every use case of Steward, for the CLI and the HTTP server alike.
//!
//! Each operation takes an [`Actor`] (who, by which channel, under which request id) and does,
//! in order: authorise the principal down to field groups (casbin's decisions from the data
//! directory's `policies/`) → act on the vault, decrypting only the fields allowed → append
//! one audit event (in the same atomic batch as a write; before any data is returned for a
//! read; refusals and failures too). If the audit append fails, the operation fails. (Consent
//! checks join this sequence with the consent issue.)
//!
//! It must never format a personal value into an error or a log line, and never bypass the
//! authorisation step, not even for the CLI: the CLI acts as the built-in local admin.
//!
//! Layout:
//! - `error`: [`Error`] with stable codes.
//! - `policies`: the default policy files and how a data directory gets its copy.
//! - `subjects`: create, read, update, erase, find, list; gifts.
//! - `admin`: users, key rotation, backups.
//! - `sessions`: console sign-in, sessions, CSRF tokens, passwords.

mod admin;
mod analytics;
mod backup;
mod consent_ops;
mod error;
mod imports;
mod interactions;
mod mappings;
mod merges;
mod notify;
mod policies;
mod recipients;
mod repair;
mod requests;
mod retention;
mod ropa;
mod sessions;
mod subjects;
mod timeline;
mod trail;
mod webhook;
pub use trail::{action_filters, ACTIONS};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::sync::RwLock;

pub use access_control::{Action, OBJECTS};
use access_control::{Policy, Principals};
use domain::{AccessGroup, Schema};
use vault::{SealTo, Unlock, Vault};

pub use analytics::{
    fep, lapsed, rfm, stewardship, suppress_fep, suppress_stewardship, two_sided_geometric,
    AnalyticsQuery, Cell, Coverage, Donor, Fep, Lapsed, Period, PrivateFep, Rate, Report, Rfm,
    Stewardship, ANALYTICS_PURPOSE, MIN_CELL,
};
pub use backup::{ExportedCheckpoint, LaterErasures};
pub use consent_ops::{ConsentState, ExpiringConsent, Explanation, SegmentRow};
pub use error::{Error, ErrorKind};
pub use imports::{
    default_rule, Counts, ImportOptions, ImportRecord, ImportReport, Problem, Progress, ReportRows,
    ReviewItem, RowReport, Source, Stage, Survivorship, BATCH_ROWS, REPORT_CSV_HEADER,
};
pub use interactions::{
    ActivityImport, InteractionView, NewInteraction, RefusedActivity, MAX_INTERACTIONS,
    MAX_PARTICIPANTS,
};
pub use mappings::{MAPPINGS_DIR, MAX_MAPPING_BYTES};
pub use merges::{FieldContribution, MatchExplanation, MergeRecord};
pub use notify::{Attempt, DeliveryReport, Notification, RETRY_DELAYS};
pub use policies::{PolicyFiles, DEFAULT_POLICIES, DIR as POLICY_DIR};
pub use recipients::{
    Disabled, RecipientInput, RecipientView, Registered, ROTATION_OVERLAP_SECONDS,
};
pub use repair::{CheckFinding, CheckReport, SplitRecord, Undone};
pub use requests::{RequestStep, SubjectRequest, JURISDICTIONS, REQUEST_TYPES};
pub use retention::{ErasureCertificate, Recipient, RetentionReport};
pub use ropa::ropa;
pub use sessions::SignedIn;
pub use subjects::{
    GiftView, Lookup, NameHit, NewSubjectInput, Special, SubjectView, MAX_BATCH, MAX_NAME_HITS,
    REVEAL_REASONS,
};
pub use timeline::{Timeline, TimelineItem};
pub use webhook::signature_header;

// What the adapters name from the crates behind the door, so that they depend on `hub` and
// `domain` alone: types to build requests and read answers, the data directory's file names,
// and pure parsers and writers of files. Nothing re-exported here reads the store, authorises
// or audits; that is the hub's own work.
pub use access_control::{
    Principal, PrincipalId, Role, Session, LOCKOUT_SECONDS, MAX_FAILED_SIGN_INS, MIN_PASSWORD,
    SESSION_ABSOLUTE_SECONDS, SESSION_IDLE_SECONDS,
};
pub use consent::NewConsent;
pub use vault::{StoreChoice, STORE_ENV};

/// The audit log's types: events, queries, checkpoints, verification, settings.
pub mod audit_log {
    pub use audit::{verify_archive, AuditConfig, Checkpoint, Event, Outcome, Query, Verification};
}

/// Sealing and unlocking the key ring; the data directory's file names.
pub mod keys {
    pub use vault::crypto::{fill_random, new_passphrase};
    pub use vault::{
        layout, read_passphrase_file, read_seal_info, RotationOptions, SealInfo, SealTo, Unlock,
        VaultStats,
    };
}

/// Reading import files before they reach the hub: profiles, mappings, date orders, phones.
pub mod import {
    pub use importers::dates::{parse_order, DateColumn, DateEvidence};
    pub use importers::matching::Thresholds;
    pub use importers::phones::read_phone_checked;
    pub use importers::{MappingFile, Profile, Reader, Target};
}

/// Writing what Steward hands out: CSV lines, private files, zip and tar, age encryption.
pub mod files {
    pub use exporters::{
        age_encrypt, age_encrypt_passphrase, audit_csv_header, audit_csv_line, package_files,
        segment_csv_header, segment_csv_line, write_private, write_private_dir, write_tar,
        write_zip,
    };
}

/// Synthetic constituents for the demo and benchmarks.
pub mod sample {
    pub use synth::Generator;
}

/// How an actor reached Steward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// The `steward` command on the host that holds the data directory.
    Cli,
    /// The HTTP API, from this peer address.
    Http(String),
}

/// Who is acting, for authorisation and audit.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The authenticated principal.
    pub principal: Principal,
    /// How they reached us.
    pub channel: Channel,
    /// Correlates this operation with a request and its log lines.
    pub request_id: Option<String>,
}

/// The hub of one data directory.
pub struct Hub {
    holidays: requests::HolidayRules,
    /// What documents say of the organisation (organisation.toml).
    organisation: ropa::OrgFacts,
    holds: Vec<retention::HoldRule>,
    lapsed: Option<(i32, bool)>,
    /// Years interactions are kept (retention.toml's `interactions` class), if it has one.
    interaction_years: Option<i32>,
    ledger: consent::Ledger,
    /// The purposes in force; an administrator may replace them ([`Hub::put_purposes`]).
    purposes: RwLock<Arc<consent::Purposes>>,
    /// One private analytics release at a time: the budget is read, then spent.
    dp_lock: std::sync::Mutex<()>,
    vault: Arc<Vault>,
    audit: Arc<audit::AuditLog>,
    schema: Arc<Schema>,
    principals: Principals,
    policy: RwLock<Arc<Policy>>,
    local_admin: Principal,
}

/// What `Hub::init` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InitReport {
    /// The vault's part: data directory and sealing.
    #[serde(flatten)]
    pub vault: vault::InitReport,
    /// Where the policy files were copied from (`built-in defaults` or a path).
    pub policies_from: String,
}

impl Hub {
    /// Creates a data directory with a sealed master secret, a copy of the policy files and
    /// the built-in local admin.
    pub fn init(dir: &Path, seal_to: &SealTo, policies: &PolicyFiles) -> Result<InitReport, Error> {
        Hub::init_with(dir, seal_to, policies, &vault::StoreChoice::Sled)
    }

    /// [`Hub::init`] with the data in `store` (a PostgreSQL database for several servers).
    pub fn init_with(
        dir: &Path,
        seal_to: &SealTo,
        policies: &PolicyFiles,
        store: &vault::StoreChoice,
    ) -> Result<InitReport, Error> {
        // Validate the policies before anything is created.
        let schema = Arc::new(policies.schema()?);
        policies.policy()?;
        policies.purposes(&schema)?;
        ropa::ropa(policies)?;
        let report = Vault::init_with(dir, seal_to, store)?;
        let result = (|| {
            policies.write_to(&dir.join(policies::DIR))?;
            let unlock = match seal_to {
                SealTo::Identity(p) => Unlock::Identity(p.clone()),
                SealTo::Passphrase(s) => Unlock::Passphrase(s.clone()),
            };
            let vault = Arc::new(Vault::open(dir, &unlock, schema)?);
            Principals::new(vault).ensure_local_admin()?;
            Ok::<_, Error>(())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(dir);
            return Err(e);
        }
        Ok(InitReport {
            vault: report,
            policies_from: policies.origin().to_string(),
        })
    }

    /// Opens a data directory.
    pub fn open(dir: &Path, unlock: &Unlock) -> Result<Hub, Error> {
        Hub::open_with(dir, unlock, audit::AuditConfig::default())
    }

    /// [`Hub::open`] with the audit log's checkpoint schedule.
    pub fn open_with(
        dir: &Path,
        unlock: &Unlock,
        audit_config: audit::AuditConfig,
    ) -> Result<Hub, Error> {
        Hub::open_inner(dir, unlock, audit_config, None)
    }

    /// [`Hub::open_with`] on a store the caller built ([`vault::Vault::open_on`]): the seam
    /// for other backends, and for tests that wrap the store.
    pub fn open_on(
        dir: &Path,
        unlock: &Unlock,
        audit_config: audit::AuditConfig,
        store: std::sync::Arc<dyn vault::Store>,
    ) -> Result<Hub, Error> {
        Hub::open_inner(dir, unlock, audit_config, Some(store))
    }

    fn open_inner(
        dir: &Path,
        unlock: &Unlock,
        audit_config: audit::AuditConfig,
        store: Option<std::sync::Arc<dyn vault::Store>>,
    ) -> Result<Hub, Error> {
        let policies = PolicyFiles::load(&dir.join(policies::DIR)).map_err(|e| match e {
            Error::BadRequest(m) if !dir.join(vault::layout::SEAL).exists() => {
                let _ = m;
                Error::Vault(vault::Error::NotInitialised(dir.to_path_buf()))
            }
            other => other,
        })?;
        let schema = Arc::new(policies.schema()?);
        let policy = policies.policy()?;
        let purposes = Arc::new(policies.purposes(&schema)?);
        let holds = retention::hold_rules(&policies, &schema)?;
        let lapsed = retention::lapsed_rule(&policies)?;
        let interaction_years = retention::class_years(&policies, "interactions")?;
        let holidays = requests::holiday_rules(&policies)?;
        let organisation = ropa::org_facts(&policies)?;
        let vault = Arc::new(match store {
            Some(store) => Vault::open_on(dir, unlock, schema.clone(), store)?,
            None => Vault::open(dir, unlock, schema.clone())?,
        });
        vault.set_match_keys(imports::match_keys(schema.clone()));
        let principals = Principals::new(vault.clone());
        let local_admin = principals.ensure_local_admin()?;
        let audit = Arc::new(
            audit::AuditLog::open(
                vault.store().clone(),
                vault.audit_segments()?,
                vault.keys(),
                audit_config,
            )
            .map_err(|e| Error::Audit(e.to_string()))?,
        );
        let ledger = consent::Ledger::new(vault.store().clone())
            .with_jurisdiction(&organisation.jurisdiction);
        let hub = Hub {
            holidays,
            organisation,
            holds,
            lapsed,
            interaction_years,
            ledger,
            purposes: RwLock::new(purposes),
            dp_lock: std::sync::Mutex::new(()),
            vault,
            audit,
            schema,
            principals,
            policy: RwLock::new(Arc::new(policy)),
            local_admin,
        };
        // Ledgers written before consent expiries were indexed get their index, once.
        const EXPIRY_INDEXED: &[u8] = b"consent-expiry-indexed";
        if hub
            .vault
            .store()
            .get(vault::keyspaces::META, EXPIRY_INDEXED)?
            .is_none()
        {
            let n = hub
                .ledger
                .index_expiries()
                .map_err(consent_ops::consent_error)?;
            let mut b = vault::Batch::new();
            b.put(vault::keyspaces::META, EXPIRY_INDEXED.to_vec(), Vec::new());
            hub.vault.apply_durably(b)?;
            if n > 0 {
                tracing::info!(events = n, "consent expiries indexed");
            }
        }
        // Erasures made after the backup this directory may have been restored from are
        // applied again (holds included) before anything is served.
        let pending = hub.vault.pending_erasures()?;
        if !pending.is_empty() {
            tracing::warn!(
                count = pending.len(),
                "erasures from the journal applied again (restored from an older backup)"
            );
            let actor = hub.local_actor();
            for id in &pending {
                hub.audited(&actor, "replay.erasure", |trail| {
                    trail.subject(id);
                    hub.erase_with_rules(id, vault::Batch::new()).map(|_| ())
                })?;
            }
        }
        Ok(hub)
    }

    /// The actor the CLI uses when it opened the data directory itself.
    pub fn local_actor(&self) -> Actor {
        Actor {
            principal: self.local_admin.clone(),
            channel: Channel::Cli,
            request_id: None,
        }
    }

    /// Resolves an API token. Failures are not audited here: the caller knows the source
    /// (see [`Hub::audit_auth_failure`]).
    pub fn authenticate(&self, token: &str) -> Result<Principal, Error> {
        self.principals.authenticate(token).map_err(Error::from)
    }

    /// The audit log (for tests that make its store fail, and for diagnostics).
    pub fn audit_log(&self) -> &Arc<audit::AuditLog> {
        &self.audit
    }

    /// The field catalogue.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.vault.dir().to_path_buf()
    }

    /// The underlying vault (diagnostics and benchmarks).
    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// Records who holds the directory (the server calls this with its address).
    pub fn set_owner_note(&self, note: &str) -> Result<(), Error> {
        Ok(self.vault.set_owner_note(note)?)
    }

    /// Removes the owner note.
    pub fn clear_owner_note(&self) {
        self.vault.clear_owner_note();
    }

    /// Re-reads `model.conf`, `policy.csv` and `purposes.toml` from the data directory and
    /// puts the decision table and the purposes in force; on error both old ones stay.
    /// Returns the number of rules.
    pub fn reload_policies(&self) -> Result<usize, Error> {
        let files = PolicyFiles::load(&self.vault.dir().join(policies::DIR))?;
        // Both checked before either is put in force: an invalid file changes nothing.
        let policy = files.policy()?;
        let purposes = files.purposes(&self.schema)?;
        let n = policy.rule_count();
        *self.policy.write().expect("policy lock") = Arc::new(policy);
        *self.purposes.write().expect("purposes lock") = Arc::new(purposes);
        Ok(n)
    }

    /// The access rules (`policies/policy.csv`) of the data directory, as text (admin only).
    pub fn access_rules(&self, actor: &Actor) -> Result<String, Error> {
        self.audited(actor, "read.policy", |_| {
            self.require(actor, "users", Action::Admin)?;
            let files = PolicyFiles::load(&self.vault.dir().join(policies::DIR))?;
            Ok(files.text_of("policy.csv").to_string())
        })
    }

    /// Replaces the access rules (`policies/policy.csv`) after checking them, and puts them in
    /// force at once (admin only). A rule that does not parse refuses the whole edit, naming
    /// its line; the file is replaced whole (written beside it, then renamed).
    pub fn put_access_rules(&self, actor: &Actor, text: &str) -> Result<usize, Error> {
        self.audited(actor, "update.policy", |trail| {
            trail.fields(["policy.csv"]);
            self.require(actor, "users", Action::Admin)?;
            let dir = self.vault.dir().join(policies::DIR);
            let files = PolicyFiles::load(&dir)?.with_text("policy.csv", text);
            let policy = files
                .policy()
                .map_err(|e| Error::BadRequest(format!("the rules were not changed: {e}")))?;
            let io = |e: std::io::Error| Error::Internal(format!("writing policy.csv: {e}"));
            let part = dir.join(".policy.csv.part");
            std::fs::write(&part, text).map_err(io)?;
            std::fs::rename(&part, dir.join("policy.csv")).map_err(io)?;
            let n = policy.rule_count();
            *self.policy.write().expect("policy lock") = Arc::new(policy);
            trail.count = Some(n as u64);
            Ok(n)
        })
    }

    /// The purposes file (`policies/purposes.toml`) of the data directory, as text (admin).
    pub fn purposes_text(&self, actor: &Actor) -> Result<String, Error> {
        self.audited(actor, "read.policy", |_| {
            self.require(actor, "users", Action::Admin)?;
            let files = PolicyFiles::load(&self.vault.dir().join(policies::DIR))?;
            Ok(files.text_of("purposes.toml").to_string())
        })
    }

    /// Replaces the purposes (`policies/purposes.toml`) after checking them against the field
    /// catalogue, and puts them in force at once: the consent gate, segments and packages use
    /// them from the next call (admin only). An invalid file changes nothing and says why.
    /// Events already in the ledger keep the purpose names they were recorded under.
    pub fn put_purposes(&self, actor: &Actor, text: &str) -> Result<usize, Error> {
        self.audited(actor, "update.policy", |trail| {
            trail.fields(["purposes.toml"]);
            self.require(actor, "users", Action::Admin)?;
            let dir = self.vault.dir().join(policies::DIR);
            let files = PolicyFiles::load(&dir)?.with_text("purposes.toml", text);
            let purposes = files
                .purposes(&self.schema)
                .map_err(|e| Error::BadRequest(format!("the purposes were not changed: {e}")))?;
            let io = |e: std::io::Error| Error::Internal(format!("writing purposes.toml: {e}"));
            let part = dir.join(".purposes.toml.part");
            std::fs::write(&part, text).map_err(io)?;
            std::fs::rename(&part, dir.join("purposes.toml")).map_err(io)?;
            let n = purposes.all().len();
            *self.purposes.write().expect("purposes lock") = Arc::new(purposes);
            trail.count = Some(n as u64);
            Ok(n)
        })
    }

    /// The decision table now in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().expect("policy lock").clone()
    }

    /// Whether a role may do `action` on `object`.
    pub fn allows(&self, role: Role, object: &str, action: Action) -> bool {
        self.policy
            .read()
            .expect("policy lock")
            .allows(role, object, action)
    }

    fn allows_group(&self, role: Role, group: AccessGroup, action: Action) -> bool {
        self.allows(role, group.object(), action)
    }

    fn require(&self, actor: &Actor, object: &str, action: Action) -> Result<(), Error> {
        if self.allows(actor.principal.role, object, action) {
            Ok(())
        } else {
            tracing::info!(
                principal = %actor.principal.id,
                role = %actor.principal.role,
                object,
                action = action.as_str(),
                "denied"
            );
            Err(Error::Forbidden {
                action: action.as_str(),
                object: object.to_string(),
                fields: Vec::new(),
            })
        }
    }
}

#[cfg(test)]
mod analytics_tests;
#[cfg(test)]
mod repair_tests;
#[cfg(test)]
mod tests;
