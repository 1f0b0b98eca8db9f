//! Administration (users, key rotation, backups; admin only) and the audit log (auditors).

use std::io::Write;

use access_control::{Principal, Role};
use audit::{Checkpoint, Event, Query, Verification};
use vault::{BackupReport, RotationOptions, RotationReport};

use crate::error::Error;
use crate::{Action, Actor, Hub};

impl Hub {
    /// Adds a user; returns it with its token (shown once).
    pub fn add_user(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
    ) -> Result<(Principal, String), Error> {
        self.add_user_with_password(actor, name, role, None)
    }

    /// Adds a user with a console password as well as a token, in one write.
    pub fn add_user_with_password(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        password: Option<&str>,
    ) -> Result<(Principal, String), Error> {
        self.audited(actor, "create.user", |trail| {
            trail.subject(format!("user:{name}"));
            trail.fields(["role"]);
            if password.is_some() {
                trail.fields(["password"]);
            }
            self.require(actor, "users", Action::Admin)?;
            self.commit_audited(actor, "create.user", trail, |batch| {
                Ok(self.principals.add(name, role, password, batch)?)
            })
        })
    }

    /// Issues a fresh token for a user, revoking the old one.
    pub fn reissue_token(&self, actor: &Actor, name: &str) -> Result<(Principal, String), Error> {
        self.audited(actor, "reissue.token", |trail| {
            trail.subject(format!("user:{name}"));
            self.require(actor, "users", Action::Admin)?;
            self.commit_audited(actor, "reissue.token", trail, |batch| {
                Ok(self.principals.reissue(name, batch)?)
            })
        })
    }

    /// Lists users.
    pub fn list_users(&self, actor: &Actor) -> Result<Vec<Principal>, Error> {
        self.audited(actor, "list.user", |_| {
            self.require(actor, "users", Action::Admin)?;
            Ok(self.principals.list()?)
        })
    }

    /// Revokes a user.
    pub fn revoke_user(&self, actor: &Actor, name: &str) -> Result<Principal, Error> {
        self.audited(actor, "revoke.user", |trail| {
            trail.subject(format!("user:{name}"));
            self.require(actor, "users", Action::Admin)?;
            self.commit_audited(actor, "revoke.user", trail, |batch| {
                Ok(self.principals.revoke(name, batch)?)
            })
        })
    }

    /// Changes a user's role.
    pub fn set_user_role(&self, actor: &Actor, name: &str, role: Role) -> Result<Principal, Error> {
        self.audited(actor, "update.user", |trail| {
            trail.subject(format!("user:{name}"));
            trail.fields(["role"]);
            self.require(actor, "users", Action::Admin)?;
            self.commit_audited(actor, "update.user", trail, |batch| {
                Ok(self.principals.set_role(name, role, batch)?)
            })
        })
    }

    /// Rotates the key-encryption key (or resumes an interrupted rotation).
    pub fn rotate_keys(
        &self,
        actor: &Actor,
        options: &RotationOptions,
    ) -> Result<RotationReport, Error> {
        self.audited(actor, "rotate.keys", |_| {
            self.require(actor, "keys", Action::Admin)?;
            Ok(self.vault.rotate(options)?)
        })
    }

    /// Checks, without doing anything, that the actor may take backups.
    pub fn authorise_backup(&self, actor: &Actor) -> Result<(), Error> {
        if self.allows(actor.principal.role, "keys", Action::Admin) {
            return Ok(());
        }
        self.audited(actor, "create.backup", |_| {
            self.require(actor, "keys", Action::Admin)
        })
    }

    /// Writes an encrypted, consistent snapshot of the data directory.
    pub fn backup(&self, actor: &Actor, out: &mut dyn Write) -> Result<BackupReport, Error> {
        self.audited(actor, "create.backup", |_| {
            self.require(actor, "keys", Action::Admin)?;
            Ok(self.vault.backup(out)?)
        })
    }

    /// Diagnostics.
    pub fn stats(&self) -> Result<vault::VaultStats, Error> {
        Ok(self.vault.stats()?)
    }

    /// Audit events matching the query, and the cursor of the next page.
    pub fn audit_query(
        &self,
        actor: &Actor,
        query: &Query,
    ) -> Result<(Vec<Event>, Option<u64>), Error> {
        self.audited(actor, "read.audit", |_| {
            self.require(actor, "audit", Action::Read)?;
            // A filter that cannot match is refused, naming it, rather than answered with
            // an empty list that reads as "nothing happened".
            for (name, value) in [("from", &query.from), ("to", &query.to)] {
                if let Some(v) = value {
                    if consent::normalise_time(v).is_none() {
                        return Err(Error::BadRequest(format!(
                            "{name}: not a date (YYYY-MM-DD) or an RFC 3339 time"
                        )));
                    }
                }
            }
            if let Some(a) = &query.action {
                if !crate::trail::known_action(a) {
                    return Err(Error::BadRequest(format!(
                        "action: not an action Steward records; give one of {}, or its first word (read) or last (subject)",
                        crate::ACTIONS.join(", ")
                    )));
                }
            }
            self.audit
                .query(query)
                .map_err(|e| Error::BadRequest(e.to_string()))
        })
    }

    /// Verifies the audit log (optionally against a checkpoint kept elsewhere).
    pub fn audit_verify(
        &self,
        actor: &Actor,
        against: Option<&Checkpoint>,
    ) -> Result<Verification, Error> {
        self.audit_verify_with_archive(actor, against, None)
    }

    /// Moves the audit log's sealed segments to `to` (a directory on other storage): the
    /// live log then starts after them, and `audit verify --archive` reads them back.
    /// Returns how many segments and events moved. An administrator's task.
    pub fn audit_archive(&self, actor: &Actor, to: &std::path::Path) -> Result<(u64, u64), Error> {
        self.audited(actor, "archive.audit", |trail| {
            self.require(actor, "audit", Action::Write)?;
            let (segments, events) = self
                .audit
                .archive(to)
                .map_err(|e| Error::Audit(e.to_string()))?;
            trail.count = Some(events);
            Ok((segments, events))
        })
    }

    /// [`Hub::audit_verify`], reading the archived segments from `archive` first.
    pub fn audit_verify_with_archive(
        &self,
        actor: &Actor,
        against: Option<&Checkpoint>,
        archive: Option<&std::path::Path>,
    ) -> Result<Verification, Error> {
        let verify = || {
            self.audit
                .verify_with_archive(against, archive)
                .map_err(|e| match e {
                    // The log's own bytes could not be read back: the disk, not the request.
                    audit::Error::Damaged(detail) => Error::Storage {
                        keyspace: "audit log",
                        detail,
                    },
                    other => Error::BadRequest(other.to_string()),
                })
        };
        match self.audited(actor, "verify.audit", |_| {
            self.require(actor, "audit", Action::Read)?;
            verify()
        }) {
            // The log refused the verification's own event because it is damaged (shorter
            // than its head): verifying only reads, and saying what is wrong is the point, so
            // the answer is given all the same (the refused append is logged).
            Err(Error::Audit(_)) if self.allows(actor.principal.role, "audit", Action::Read) => {
                let v = verify()?;
                if v.ok {
                    return Err(Error::Audit(
                        "the audit log refused an event though it verifies".into(),
                    ));
                }
                Ok(v)
            }
            other => other,
        }
    }

    /// The latest signed checkpoint of the log (stored as the log grows), if any: its size,
    /// head and time, for the auditor's page. Reads only; signs nothing.
    pub fn latest_checkpoint(&self, actor: &Actor) -> Result<Option<Checkpoint>, Error> {
        self.audited(actor, "read.audit", |_| {
            self.require(actor, "audit", Action::Read)?;
            self.audit
                .latest_checkpoint()
                .map_err(|e| Error::Audit(e.to_string()))
        })
    }

    /// Signs and returns a checkpoint of the log as it is now, for keeping off the host.
    pub fn audit_checkpoint(&self, actor: &Actor) -> Result<Checkpoint, Error> {
        self.audited(actor, "export.checkpoint", |_| {
            self.require(actor, "audit", Action::Read)?;
            self.audit
                .checkpoint()
                .map_err(|e| Error::Audit(e.to_string()))
        })
    }
}
