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
}

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
}

/// A principal as stored: the public record plus its token hash.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    principal: Principal,
    #[serde(default)]
    token_hash: Option<String>,
}

fn decode(bytes: &[u8]) -> Option<Principal> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    let mut p = stored.principal;
    p.token_hash = stored.token_hash;
    Some(p)
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

    fn save(&self, batch: &mut Batch, p: &Principal) {
        batch.put(
            ks::PRINCIPALS,
            p.id.0.as_bytes().to_vec(),
            serde_json::to_vec(&Stored {
                principal: p.clone(),
                token_hash: p.token_hash.clone(),
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
        };
        let mut b = Batch::new();
        self.save(&mut b, &p);
        self.vault.apply_durably(b)?;
        Ok(p)
    }

    /// Adds a principal and returns it with its token, which is shown only this once. `extra`
    /// writes (the audit event) go in the same atomic batch; so for the other changes below.
    pub fn add(&self, name: &str, role: Role, extra: Batch) -> Result<(Principal, String), Error> {
        if !valid_name(name) {
            return Err(Error::BadName);
        }
        if self.by_name(name).is_ok() {
            return Err(Error::NameTaken(name.to_string()));
        }
        let token = self.new_token()?;
        let hash = self.token_hash(&token);
        let p = Principal {
            id: self.new_id()?,
            name: name.to_string(),
            role,
            created: now(),
            revoked: false,
            token_hash: Some(hex(&hash)),
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
