//! Console sessions: a random token in an HttpOnly cookie, stored only as a keyed hash, with
//! idle and absolute timeouts; and the CSRF token of each session, derived from it.

use domain::hex;
use serde::{Deserialize, Serialize};
use vault::{keyspaces as ks, Batch};

use crate::principals::{unix_now, Error, Principal, Principals};

const SESSION_PREFIX: &str = "stw_s_";
const SESSION_LABEL: &str = "console-session";
const CSRF_LABEL: &str = "console-csrf";

/// A session ends after this long without a request (seconds).
pub const SESSION_IDLE_SECONDS: u64 = 30 * 60;
/// A session ends this long after sign-in whatever happens (seconds).
pub const SESSION_ABSOLUTE_SECONDS: u64 = 12 * 60 * 60;
/// A session's last-seen time is stored again only after this many seconds, so that a burst
/// of page views is not a burst of writes.
const TOUCH_EVERY_SECONDS: u64 = 60;

/// A session as stored under the keyed hash of its token. Ids and times only.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    principal: String,
    started: u64,
    seen: u64,
    /// The principal's password generation at sign-in.
    #[serde(default)]
    generation: u32,
}

/// A live console session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who signed in.
    pub principal: Principal,
    /// The token to check the form's CSRF field against.
    pub csrf: String,
    /// When it began (Unix seconds).
    pub started: u64,
}

impl Principals {
    fn session_key(&self, token: &str) -> [u8; 32] {
        self.vault()
            .keys()
            .keyed_hash(SESSION_LABEL, token.as_bytes())
    }

    /// The CSRF token of a session: a keyed hash of its token, so nothing more is stored.
    pub fn csrf_token(&self, session_token: &str) -> String {
        hex(&self
            .vault()
            .keys()
            .keyed_hash(CSRF_LABEL, session_token.as_bytes()))
    }

    /// True when `given` is the CSRF token of `session_token` (constant time).
    pub fn check_csrf(&self, session_token: &str, given: &str) -> bool {
        match domain::unhex(given) {
            Some(bytes) => {
                self.vault()
                    .keys()
                    .verify_keyed_hash(CSRF_LABEL, session_token.as_bytes(), &bytes)
            }
            None => false,
        }
    }

    /// Begins a session for `p` at `now` into `batch`; returns its token (for the cookie).
    pub fn start_session(
        &self,
        p: &Principal,
        now: u64,
        batch: &mut Batch,
    ) -> Result<String, Error> {
        let mut bytes = [0u8; 32];
        if !vault::crypto::fill_random(&mut bytes) {
            return Err(Error::Random);
        }
        let token = format!("{SESSION_PREFIX}{}", hex(&bytes));
        let stored = Stored {
            principal: hex(p.id.0.as_bytes()),
            started: now,
            seen: now,
            generation: p.password_generation(),
        };
        batch.put(
            ks::SESSIONS,
            self.session_key(&token).to_vec(),
            serde_json::to_vec(&stored).expect("session serialises"),
        );
        Ok(token)
    }

    /// The live session of a token at `now`: unknown, expired (idle or absolute), revoked and
    /// password-changed sessions all give [`Error::Unauthenticated`]; an expired one is
    /// deleted. A session in use has its last-seen time stored again once a minute.
    pub fn session(&self, token: &str, now: u64) -> Result<Session, Error> {
        if !token.starts_with(SESSION_PREFIX) || token.len() != SESSION_PREFIX.len() + 64 {
            return Err(Error::Unauthenticated);
        }
        let key = self.session_key(token);
        let store = self.vault().store();
        let Some(bytes) = store.get(ks::SESSIONS, &key).map_err(vault::Error::from)? else {
            return Err(Error::Unauthenticated);
        };
        let mut stored: Stored =
            serde_json::from_slice(&bytes).map_err(|_| Error::Unauthenticated)?;
        let principal = domain::unhex(&stored.principal)
            .map(|id| self.by_id(&id))
            .transpose()?
            .flatten();
        let live = |p: &Principal| {
            !p.revoked
                && p.has_password()
                && stored.generation == p.password_generation()
                && now < stored.started + SESSION_ABSOLUTE_SECONDS
                && now < stored.seen + SESSION_IDLE_SECONDS
        };
        let Some(principal) = principal.filter(live) else {
            let mut b = Batch::new();
            b.delete(ks::SESSIONS, key.to_vec());
            self.vault().apply_durably(b)?;
            return Err(Error::Unauthenticated);
        };
        if now >= stored.seen + TOUCH_EVERY_SECONDS {
            stored.seen = now;
            let mut b = Batch::new();
            b.put(
                ks::SESSIONS,
                key.to_vec(),
                serde_json::to_vec(&stored).expect("session serialises"),
            );
            // Not flushed: losing a last-seen time in a crash only ends a session sooner.
            store.apply(b).map_err(vault::Error::from)?;
        }
        Ok(Session {
            principal,
            csrf: self.csrf_token(token),
            started: stored.started,
        })
    }

    /// Ends a session into `batch` (sign-out).
    pub fn end_session(&self, token: &str, batch: &mut Batch) {
        batch.delete(ks::SESSIONS, self.session_key(token).to_vec());
    }
}

/// Seconds since the Unix epoch, as the session checks count them.
pub fn now() -> u64 {
    unix_now()
}
