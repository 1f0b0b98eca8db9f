//! Console sign-in: passwords, sessions, CSRF tokens, sign-out.
//!
//! A sign-in is audited like every operation (`create.session`): `ok`, or `denied` with
//! `bad_credentials` or `locked`. A failure is counted against a known user in the same atomic
//! batch as its event; the fifth in a row locks the account for fifteen minutes. The name typed
//! is never recorded (it may be a password typed in the wrong box): an unknown name is an event
//! with no actor.

use access_control::{Principal, Session};
use audit::{NewEvent, Outcome};
use vault::Batch;

use crate::error::Error;
use crate::trail::Trail;
use crate::{Action, Actor, Channel, Hub};

/// A successful sign-in: who, the session token for the cookie, and its CSRF token.
#[derive(Debug)]
pub struct SignedIn {
    /// Who signed in.
    pub principal: Principal,
    /// The session token (the cookie's value); shown only to the browser.
    pub token: String,
    /// The token every form of this session carries.
    pub csrf: String,
}

impl Hub {
    /// Signs a user in to the console from `source` (the peer address) with a password.
    pub fn sign_in(
        &self,
        source: &str,
        request_id: Option<&str>,
        name: &str,
        password: &str,
    ) -> Result<SignedIn, Error> {
        let now = access_control::now();
        let (found, outcome) = self.principals.check_password(name, password, now)?;
        let Some(mut principal) = found else {
            self.append_sign_in_event(None, source, request_id, "bad_credentials")?;
            return Err(Error::from(
                outcome
                    .err()
                    .unwrap_or(access_control::Error::BadCredentials),
            ));
        };
        let actor = Actor {
            principal: principal.clone(),
            channel: Channel::Http(source.to_string()),
            request_id: request_id.map(str::to_string),
        };
        match outcome {
            Ok(()) => {
                let mut trail = Trail::default();
                trail.subject(format!("user:{}", principal.name));
                let token = self.commit_audited(&actor, "create.session", &mut trail, |batch| {
                    let mut batch = batch;
                    self.principals.record_sign_in(&mut principal, &mut batch);
                    let token = self.principals.start_session(&principal, now, &mut batch)?;
                    self.vault.apply_durably(batch)?;
                    Ok(token)
                })?;
                let csrf = self.principals.csrf_token(&token);
                Ok(SignedIn {
                    principal,
                    token,
                    csrf,
                })
            }
            Err(e @ access_control::Error::Locked { .. }) => {
                self.append_sign_in_event(Some(&actor), source, request_id, "locked")?;
                Err(Error::from(e))
            }
            Err(e) => {
                let mut trail = Trail::default();
                trail.subject(format!("user:{}", principal.name));
                let mut event =
                    self.new_event(&actor, "create.session", &trail, Outcome::Denied, None);
                let mut batch = Batch::new();
                let locked = self
                    .principals
                    .record_failed_sign_in(&mut principal, now, &mut batch);
                event.reason = Some(
                    if locked {
                        "locked_now"
                    } else {
                        "bad_credentials"
                    }
                    .into(),
                );
                self.audit
                    .append_with(vec![event], |audit_batch| {
                        let mut audit_batch = audit_batch;
                        audit_batch.extend(batch);
                        self.vault.apply_durably(audit_batch)
                    })
                    .map_err(|e| Error::Audit(e.to_string()))??;
                Err(Error::from(e))
            }
        }
    }

    fn append_sign_in_event(
        &self,
        actor: Option<&Actor>,
        source: &str,
        request_id: Option<&str>,
        reason: &str,
    ) -> Result<(), Error> {
        let event = match actor {
            Some(actor) => {
                let mut trail = Trail::default();
                trail.subject(format!("user:{}", actor.principal.name));
                self.new_event(
                    actor,
                    "create.session",
                    &trail,
                    Outcome::Denied,
                    Some(reason),
                )
            }
            None => NewEvent {
                actor: "-".into(),
                actor_name: "-".into(),
                role: "-".into(),
                action: "create.session".into(),
                subjects: Vec::new(),
                fields: Vec::new(),
                purpose: None,
                request_id: request_id.map(str::to_string),
                outcome: Outcome::Denied,
                reason: Some(reason.into()),
                source: source.to_string(),
                count: None,
            },
        };
        self.audit
            .append(event)
            .map(|_| ())
            .map_err(|e| Error::Audit(e.to_string()))
    }

    /// The live console session of a cookie's token (not audited, like token checks:
    /// every operation done in it is).
    pub fn session(&self, token: &str) -> Result<Session, Error> {
        Ok(self.principals.session(token, access_control::now())?)
    }

    /// True when `given` is the CSRF token of the session `token`.
    pub fn check_csrf(&self, token: &str, given: &str) -> bool {
        self.principals.check_csrf(token, given)
    }

    /// Ends the actor's console session.
    pub fn sign_out(&self, actor: &Actor, token: &str) -> Result<(), Error> {
        self.audited(actor, "end.session", |trail| {
            trail.subject(format!("user:{}", actor.principal.name));
            self.commit_audited(actor, "end.session", trail, |batch| {
                let mut batch = batch;
                self.principals.end_session(token, &mut batch);
                Ok(self.vault.apply_durably(batch)?)
            })
        })
    }

    /// Sets a user's console password (admin only). Ends the user's console sessions and
    /// lifts a lock.
    pub fn set_password(
        &self,
        actor: &Actor,
        name: &str,
        password: &str,
    ) -> Result<Principal, Error> {
        self.audited(actor, "update.password", |trail| {
            trail.subject(format!("user:{name}"));
            self.require(actor, "users", Action::Admin)?;
            self.commit_audited(actor, "update.password", trail, |batch| {
                Ok(self.principals.set_password(name, password, batch)?)
            })
        })
    }
}
