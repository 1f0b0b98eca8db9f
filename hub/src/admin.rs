//! Administration: users, key rotation, backups. Admin role only.

use std::io::Write;

use access_control::{Principal, Role};
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
        self.require(actor, "users", Action::Admin)?;
        Ok(self.principals.add(name, role)?)
    }

    /// Issues a fresh token for a user, revoking the old one.
    pub fn reissue_token(&self, actor: &Actor, name: &str) -> Result<(Principal, String), Error> {
        self.require(actor, "users", Action::Admin)?;
        Ok(self.principals.reissue(name)?)
    }

    /// Lists users.
    pub fn list_users(&self, actor: &Actor) -> Result<Vec<Principal>, Error> {
        self.require(actor, "users", Action::Admin)?;
        Ok(self.principals.list()?)
    }

    /// Revokes a user.
    pub fn revoke_user(&self, actor: &Actor, name: &str) -> Result<Principal, Error> {
        self.require(actor, "users", Action::Admin)?;
        Ok(self.principals.revoke(name)?)
    }

    /// Changes a user's role.
    pub fn set_user_role(&self, actor: &Actor, name: &str, role: Role) -> Result<Principal, Error> {
        self.require(actor, "users", Action::Admin)?;
        Ok(self.principals.set_role(name, role)?)
    }

    /// Rotates the key-encryption key (or resumes an interrupted rotation).
    pub fn rotate_keys(
        &self,
        actor: &Actor,
        options: &RotationOptions,
    ) -> Result<RotationReport, Error> {
        self.require(actor, "keys", Action::Admin)?;
        Ok(self.vault.rotate(options)?)
    }

    /// Checks, without doing anything, that the actor may take backups.
    pub fn authorise_backup(&self, actor: &Actor) -> Result<(), Error> {
        self.require(actor, "keys", Action::Admin)
    }

    /// Writes an encrypted, consistent snapshot of the data directory.
    pub fn backup(&self, actor: &Actor, out: &mut dyn Write) -> Result<BackupReport, Error> {
        self.require(actor, "keys", Action::Admin)?;
        Ok(self.vault.backup(out)?)
    }

    /// Diagnostics.
    pub fn stats(&self) -> Result<vault::VaultStats, Error> {
        Ok(self.vault.stats()?)
    }
}
