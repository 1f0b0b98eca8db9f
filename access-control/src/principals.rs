use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use domain::{hex, unhex};
use serde::{Deserialize, Serialize};
use vault::{keyspaces as ks, Batch, Vault};

/// The principal the CLI acts as when it opens a data directory itself.
pub const LOCAL_ADMIN: &str = "local-admin";

const TOKEN_PREFIX: &str = "stw_";
const HASH_LABEL: &str = "api-token";

/// Errors of the principal store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token is unknown, malformed or revoked. Deliberately says no more.
    #[error("the API token is not valid")]
    Unauthenticated,
    /// No principal of that name.
    #[error("no user named \"{0}\"")]
    UnknownUser(String),
    /// The name is taken.
    #[error("a user named \"{0}\" already exists")]
    NameTaken(String),
    /// A name that is not acceptable.
    #[error("user names are 1-64 letters, digits, dots, hyphens or underscores")]
    BadName,
    /// A role that does not exist.
    #[error(
        "unknown role \"{0}\"; roles are: admin, fundraiser, volunteer, data-manager, dpo, auditor"
    )]
    UnknownRole(String),
    /// The local admin cannot be changed.
    #[error("the local admin is built in and cannot be changed or revoked")]
    BuiltIn,
    /// The store failed.
    #[error(transparent)]
    Vault(#[from] vault::Error),
    /// The random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// A console password that is too short or too long.
    #[error("a console password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")]
    WeakPassword,
    /// Sign-in refused: unknown user, wrong password, no console password, or revoked.
    /// Deliberately says no more.
    #[error("the user name or password is not right")]
    BadCredentials,
    /// Sign-in refused without looking at the password: too many failures in a row.
    #[error("this account is locked for {minutes} more minute(s) after {MAX_FAILED_SIGN_INS} failed sign-ins in a row; an administrator can unlock it by setting a new password")]
    Locked {
        /// Whole minutes until the lock ends (at least 1).
        minutes: u64,
    },
}

/// Shortest console password accepted (NIST SP 800-63B asks for at least 8; staff accounts
/// here open personal data, so more).
pub const MIN_PASSWORD: usize = 12;
/// Longest console password accepted (argon2 takes any length; this bounds the work).
pub const MAX_PASSWORD: usize = 256;
/// Failed sign-ins in a row after which an account is locked.
pub const MAX_FAILED_SIGN_INS: u32 = 5;
/// How long a locked account stays locked, in seconds.
pub const LOCKOUT_SECONDS: u64 = 15 * 60;

/// The roles Steward knows. Their permissions live in `policies/policy.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Manages users and keys; everything else too.
    Admin,
    /// Reads and writes contact and financial data; never special-category data.
    Fundraiser,
    /// Reads names and contact details only.
    Volunteer,
    /// Imports and merges.
    DataManager,
    /// Data protection officer: requests, consent, erasure.
    Dpo,
    /// Reads the audit log and no personal data.
    Auditor,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Fundraiser,
        Role::Volunteer,
        Role::DataManager,
        Role::Dpo,
        Role::Auditor,
    ];

    /// The role's name as in policies and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Fundraiser => "fundraiser",
            Role::Volunteer => "volunteer",
            Role::DataManager => "data-manager",
            Role::Dpo => "dpo",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role, Error> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| Error::UnknownRole(s.to_string()))
    }
}

/// The opaque id of a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PrincipalId(pub domain::SubjectId);

impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A staff account or service that acts on Steward.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Principal {
    /// Opaque id, used in audit events.
    pub id: PrincipalId,
    /// The name the admin gave.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Revoked principals cannot authenticate.
    pub revoked: bool,
    /// Keyed hash of the current token (hex), if it has one.
    ///
    /// Never serialised with the principal: what is shown (CLI, API) cannot leak it; the
    /// store writes it through [`Stored`].
    #[serde(skip)]
    token_hash: Option<String>,
    /// The console password's argon2id PHC string, if one is set. Never serialised with the
    /// principal, like the token hash.
    #[serde(skip)]
    password_hash: Option<String>,
    /// Console sign-in state: failures in a row, the end of a lock (Unix seconds), and the
    /// password's generation (sessions begun under an earlier one have ended).
    #[serde(skip)]
    sign_in: SignInState,
}

/// A principal's console sign-in state, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SignInState {
    #[serde(default)]
    pub(crate) failures: u32,
    #[serde(default)]
    pub(crate) locked_until: u64,
    #[serde(default)]
    pub(crate) generation: u32,
}

impl Principal {
    /// True when the principal has a console password.
    pub fn has_password(&self) -> bool {
        self.password_hash.is_some()
    }

    /// When a console lock ends (Unix seconds), if the account is locked at `now`.
    pub fn locked_until(&self, now: u64) -> Option<u64> {
        (self.sign_in.locked_until > now).then_some(self.sign_in.locked_until)
    }

    pub(crate) fn password_generation(&self) -> u32 {
        self.sign_in.generation
    }
}

/// A principal as stored: the public record plus its token hash.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    principal: Principal,
    #[serde(default)]
    token_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    sign_in: SignInState,
}

fn is_default(s: &SignInState) -> bool {
    *s == SignInState::default()
}

pub(crate) fn decode(bytes: &[u8]) -> Option<Principal> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    let mut p = stored.principal;
    p.token_hash = stored.token_hash;
    p.password_hash = stored.password_hash;
    p.sign_in = stored.sign_in;
    Some(p)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hash_new_password(password: &str) -> Result<String, Error> {
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&password.chars().count()) {
        return Err(Error::WeakPassword);
    }
    vault::crypto::hash_password(password).ok_or(Error::Random)
}

/// A PHC string of a password nobody has, checked against when the user is unknown so that
/// an unknown name costs the same time as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        vault::crypto::hash_password("decoy password, never set").unwrap_or_default()
    })
}

/// The principal store, kept in the vault's store (keyspaces `principals` and `tokens`).
#[derive(Clone)]
pub struct Principals {
    vault: Arc<Vault>,
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl Principals {
    /// The store over a vault.
    pub fn new(vault: Arc<Vault>) -> Principals {
        Principals { vault }
    }

    fn token_hash(&self, token: &str) -> [u8; 32] {
        self.vault.keys().keyed_hash(HASH_LABEL, token.as_bytes())
    }

    pub(crate) fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    pub(crate) fn save(&self, batch: &mut Batch, p: &Principal) {
        batch.put(
            ks::PRINCIPALS,
            p.id.0.as_bytes().to_vec(),
            serde_json::to_vec(&Stored {
                principal: p.clone(),
                token_hash: p.token_hash.clone(),
                password_hash: p.password_hash.clone(),
                sign_in: p.sign_in.clone(),
            })
            .expect("principal serialises"),
        );
    }

    /// Every principal, revoked ones included.
    pub fn list(&self) -> Result<Vec<Principal>, Error> {
        let mut out = Vec::new();
        for entry in self.vault.store().scan_prefix(ks::PRINCIPALS, &[]) {
            let (_, v) = entry.map_err(vault::Error::from)?;
            let p: Principal = decode(&v).ok_or_else(|| vault::Error::Corrupt {
                what: "principal record".into(),
            })?;
            out.push(p);
        }
        Ok(out)
    }

    /// Finds a principal by name.
    pub fn by_name(&self, name: &str) -> Result<Principal, Error> {
        self.list()?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::UnknownUser(name.to_string()))
    }

    fn new_id(&self) -> Result<PrincipalId, Error> {
        let mut r = [0u8; 10];
        if !vault::crypto::fill_random(&mut r) {
            return Err(Error::Random);
        }
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Ok(PrincipalId(domain::SubjectId::from_parts(ms, r)))
    }

    fn new_token(&self) -> Result<String, Error> {
        let mut bytes = [0u8; 32];
        if !vault::crypto::fill_random(&mut bytes) {
            return Err(Error::Random);
        }
        Ok(format!("{TOKEN_PREFIX}{}", hex(&bytes)))
    }

    /// Makes sure the built-in local admin exists (it has no token: only a process that
    /// unsealed the data directory acts as it).
    pub fn ensure_local_admin(&self) -> Result<Principal, Error> {
        if let Ok(p) = self.by_name(LOCAL_ADMIN) {
            return Ok(p);
        }
        let p = Principal {
            id: self.new_id()?,
            name: LOCAL_ADMIN.into(),
            role: Role::Admin,
            created: now(),
            revoked: false,
            token_hash: None,
            password_hash: None,
            sign_in: SignInState::default(),
        };
        let mut b = Batch::new();
        self.save(&mut b, &p);
        self.vault.apply_durably(b)?;
        Ok(p)
    }

    /// Adds a principal and returns it with its token, which is shown only this once, and
    /// with a console password if one is given. `extra` writes (the audit event) go in the
    /// same atomic batch; so for the other changes below.
    pub fn add(
        &self,
        name: &str,
        role: Role,
        password: Option<&str>,
        extra: Batch,
    ) -> Result<(Principal, String), Error> {
        if !valid_name(name) {
            return Err(Error::BadName);
        }
        if self.by_name(name).is_ok() {
            return Err(Error::NameTaken(name.to_string()));
        }
        let password_hash = password.map(hash_new_password).transpose()?;
        let token = self.new_token()?;
        let hash = self.token_hash(&token);
        let p = Principal {
            id: self.new_id()?,
            name: name.to_string(),
            role,
            created: now(),
            revoked: false,
            token_hash: Some(hex(&hash)),
            sign_in: SignInState::default(),
            password_hash,
        };
        let mut b = Batch::new();
        self.save(&mut b, &p);
        b.put(ks::TOKENS, hash.to_vec(), p.id.0.as_bytes().to_vec());
        b.extend(extra);
        self.vault.apply_durably(b)?;
        Ok((p, token))
    }

    /// Issues a new token for an existing principal; the old one stops working.
    pub fn reissue(&self, name: &str, extra: Batch) -> Result<(Principal, String), Error> {
        let mut p = self.by_name(name)?;
        if p.name == LOCAL_ADMIN {
            return Err(Error::BuiltIn);
        }
        let token = self.new_token()?;
        let hash = self.token_hash(&token);
        let mut b = Batch::new();
        if let Some(old) = p.token_hash.as_deref().and_then(unhex) {
            b.delete(ks::TOKENS, old);
        }
        p.token_hash = Some(hex(&hash));
        p.revoked = false;
        self.save(&mut b, &p);
        b.put(ks::TOKENS, hash.to_vec(), p.id.0.as_bytes().to_vec());
        b.extend(extra);
        self.vault.apply_durably(b)?;
        Ok((p, token))
    }

    /// Revokes a principal: its token stops working at once.
    pub fn revoke(&self, name: &str, extra: Batch) -> Result<Principal, Error> {
        let mut p = self.by_name(name)?;
        if p.name == LOCAL_ADMIN {
            return Err(Error::BuiltIn);
        }
        let mut b = Batch::new();
        if let Some(old) = p.token_hash.as_deref().and_then(unhex) {
            b.delete(ks::TOKENS, old);
        }
        p.revoked = true;
        p.token_hash = None;
        self.save(&mut b, &p);
        b.extend(extra);
        self.vault.apply_durably(b)?;
        Ok(p)
    }

    /// Sets (or replaces) a principal's console password: it also lifts a lock, and every
    /// console session begun before it ends.
    pub fn set_password(
        &self,
        name: &str,
        password: &str,
        extra: Batch,
    ) -> Result<Principal, Error> {
        let mut p = self.by_name(name)?;
        if p.name == LOCAL_ADMIN {
            return Err(Error::BuiltIn);
        }
        p.password_hash = Some(hash_new_password(password)?);
        p.sign_in = SignInState {
            generation: p.sign_in.generation.wrapping_add(1),
            ..SignInState::default()
        };
        let mut b = Batch::new();
        self.save(&mut b, &p);
        b.extend(extra);
        self.vault.apply_durably(b)?;
        Ok(p)
    }

    /// Checks a console sign-in at `now` (Unix seconds). A locked account is refused without
    /// its password being looked at; an unknown name costs the same argon2 work as a wrong
    /// password. Returns the principal it checked (if the name is known, so that a failure
    /// can be counted against it) and the outcome.
    pub fn check_password(
        &self,
        name: &str,
        password: &str,
        now: u64,
    ) -> Result<(Option<Principal>, Result<(), Error>), Error> {
        let found = self.by_name(name).ok().filter(|p| p.name != LOCAL_ADMIN);
        let Some(p) = found else {
            vault::crypto::verify_password(password, decoy_hash());
            return Ok((None, Err(Error::BadCredentials)));
        };
        if let Some(until) = p.locked_until(now) {
            let minutes = (until - now).div_ceil(60).max(1);
            return Ok((Some(p), Err(Error::Locked { minutes })));
        }
        let stored = p.password_hash.as_deref().unwrap_or_else(|| decoy_hash());
        let right = vault::crypto::verify_password(password, stored) && p.password_hash.is_some();
        let outcome = if right && !p.revoked {
            Ok(())
        } else {
            Err(Error::BadCredentials)
        };
        Ok((Some(p), outcome))
    }

    /// Counts a failed sign-in against `p` into `batch`; locks the account when it was the
    /// last one allowed. Returns true when this failure locked it.
    pub fn record_failed_sign_in(&self, p: &mut Principal, now: u64, batch: &mut Batch) -> bool {
        p.sign_in.failures += 1;
        let locks = p.sign_in.failures >= MAX_FAILED_SIGN_INS;
        if locks {
            p.sign_in.failures = 0;
            p.sign_in.locked_until = now + LOCKOUT_SECONDS;
        }
        self.save(batch, p);
        locks
    }

    /// Clears `p`'s count of failed sign-ins into `batch` (after a good one).
    pub fn record_sign_in(&self, p: &mut Principal, batch: &mut Batch) {
        if p.sign_in.failures != 0 || p.sign_in.locked_until != 0 {
            p.sign_in.failures = 0;
            p.sign_in.locked_until = 0;
            self.save(batch, p);
        }
    }

    /// Changes a principal's role.
    pub fn set_role(&self, name: &str, role: Role, extra: Batch) -> Result<Principal, Error> {
        let mut p = self.by_name(name)?;
        if p.name == LOCAL_ADMIN {
            return Err(Error::BuiltIn);
        }
        p.role = role;
        let mut b = Batch::new();
        self.save(&mut b, &p);
        b.extend(extra);
        self.vault.apply_durably(b)?;
        Ok(p)
    }

    /// The principal of an id, if it exists.
    pub(crate) fn by_id(&self, id: &[u8]) -> Result<Option<Principal>, Error> {
        Ok(self
            .vault
            .store()
            .get(ks::PRINCIPALS, id)
            .map_err(vault::Error::from)?
            .and_then(|b| decode(&b)))
    }

    /// Resolves a bearer token to its principal. Unknown, malformed and revoked tokens all
    /// give the same [`Error::Unauthenticated`].
    pub fn authenticate(&self, token: &str) -> Result<Principal, Error> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() != TOKEN_PREFIX.len() + 64 {
            return Err(Error::Unauthenticated);
        }
        let hash = self.token_hash(token);
        // The lookup by hash finds the candidate; the constant-time check below decides.
        let Some(id) = self
            .vault
            .store()
            .get(ks::TOKENS, &hash)
            .map_err(vault::Error::from)?
        else {
            return Err(Error::Unauthenticated);
        };
        let Some(bytes) = self
            .vault
            .store()
            .get(ks::PRINCIPALS, &id)
            .map_err(vault::Error::from)?
        else {
            return Err(Error::Unauthenticated);
        };
        let p: Principal = decode(&bytes).ok_or(Error::Unauthenticated)?;
        let stored = p.token_hash.as_deref().and_then(unhex).unwrap_or_default();
        let matches = self
            .vault
            .keys()
            .verify_keyed_hash(HASH_LABEL, token.as_bytes(), &stored);
        if !matches || p.revoked {
            return Err(Error::Unauthenticated);
        }
        Ok(p)
    }
}
