//! The register of recipients (organisations a subject's data is disclosed to) and the record
//! of each disclosure, for GDPR Art. 19 notices and Art. 15(1)(c) answers.
//!
//! A recipient is registered once, with what it may receive (purposes and field groups), on
//! what basis, where it is, and optionally a webhook endpoint whose signing secrets are kept
//! sealed in the store. An export to a recipient records, per subject, the field groups that
//! went and when (ids only); the notifications of [`crate::notify`] are built from that record.

use domain::{AccessGroup, SubjectId};
use serde::{Deserialize, Serialize};
use vault::keyspaces as ks;

use crate::error::Error;
use crate::retention::Recipient;
use crate::webhook::{self, Reach};
use crate::{Action, Actor, Channel, Hub};

/// The register's object in policy.csv.
const OBJECT: &str = "recipients";
/// Label the signing secrets are sealed under.
const SECRET_LABEL: &str = "webhook-secret";
/// How long a replaced signing secret still signs (both signatures are sent meanwhile).
pub const ROTATION_OVERLAP_SECONDS: i64 = 24 * 3600;
/// Countries whose recipients need no transfer safeguard: the UK and the EEA.
const UK_EEA: &[&str] = &[
    "GB", "UK", "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
    "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

/// A signing secret, sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SealedSecret {
    /// Hex of the sealed key bytes.
    sealed: String,
    /// When it was added (RFC 3339).
    added: String,
    /// A replaced secret signs until then (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<i64>,
}

/// A registered recipient as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    view: RecipientView,
    #[serde(default)]
    secrets: Vec<SealedSecret>,
}

/// A registered recipient, as shown (never its secrets).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecipientView {
    /// Its name (the organisation).
    pub name: String,
    /// `processor` (acts on the organisation's instructions) or `controller`.
    pub role: String,
    /// Purposes whose segments it may receive; empty: any purpose.
    pub purposes: Vec<String>,
    /// Field groups it may receive; empty: whatever the purpose's fields are.
    pub groups: Vec<String>,
    /// The legal basis of the disclosure, in words.
    pub legal_basis: Option<String>,
    /// The contract or data processing agreement's reference.
    pub contract: Option<String>,
    /// Where it processes the data (ISO 3166 alpha-2).
    pub country: Option<String>,
    /// True when `country` is outside the UK and the EEA: a restricted transfer that needs
    /// adequacy or safeguards (Art. 44-49).
    pub transfer_outside_uk_eea: bool,
    /// The webhook endpoint notifications go to; without one, each notification is a task
    /// for a person.
    pub endpoint: Option<String>,
    /// Plain HTTP to loopback allowed (set by the operator at the command line only).
    pub allow_loopback: bool,
    /// Private and link-local addresses allowed (operator only).
    pub allow_private: bool,
    /// Signing secrets in force (two while one is being replaced).
    #[serde(default)]
    pub signing_secrets: usize,
    /// When and why it was disabled; a disabled recipient receives nothing and its
    /// notifications become tasks.
    pub disabled: Option<Disabled>,
    /// Registered (RFC 3339).
    pub created: String,
    /// Last changed (RFC 3339).
    pub updated: String,
}

/// Why a recipient was disabled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Disabled {
    /// When (RFC 3339).
    pub at: String,
    /// Why, in words (no personal value).
    pub reason: String,
}

/// What a registration or change sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientInput {
    /// processor or controller.
    pub role: Option<String>,
    /// Purposes it may receive.
    pub purposes: Option<Vec<String>>,
    /// Field groups it may receive.
    pub groups: Option<Vec<String>>,
    /// Legal basis in words.
    pub legal_basis: Option<String>,
    /// Contract or DPA reference.
    pub contract: Option<String>,
    /// ISO 3166 alpha-2 country.
    pub country: Option<String>,
    /// Webhook endpoint; an empty string removes it.
    pub endpoint: Option<String>,
    /// A Standard Webhooks secret (`whsec_…`) to sign with from now on.
    pub secret: Option<String>,
    /// Generate a new signing secret (shown once); the old one signs on for a day.
    #[serde(default)]
    pub rotate_secret: bool,
    /// Operator only: plain HTTP to loopback.
    #[serde(default)]
    pub allow_loopback: Option<bool>,
    /// Operator only: private and link-local addresses.
    #[serde(default)]
    pub allow_private: Option<bool>,
}

/// A registration's answer: the recipient, and a generated secret shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    /// The recipient.
    pub recipient: RecipientView,
    /// The signing secret Steward generated (`whsec_…`), if it generated one; it is not shown
    /// again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The name of a field group as policy files and registers write it (`contact`).
pub(crate) fn group_name(g: AccessGroup) -> &'static str {
    g.object().trim_start_matches("subject:")
}

fn valid_name(name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 100
        || name.chars().any(|c| c.is_control() || c == '/' || c == '@')
    {
        return Err(Error::BadRequest(
            "a recipient's name is an organisation's name: 1 to 100 characters, one line, no `/` or `@`".into(),
        ));
    }
    Ok(name.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

pub(crate) fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Hub {
    fn load_recipient(&self, name: &str) -> Result<Option<Stored>, Error> {
        let Some(bytes) = self
            .vault
            .store()
            .get(ks::REGISTER, name.as_bytes())
            .map_err(vault::Error::from)?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Internal(format!("recipient register entry unreadable: {e}")))
    }

    /// A registered recipient, for the delivery worker and the exports.
    pub(crate) fn registered(&self, name: &str) -> Result<Option<RecipientView>, Error> {
        Ok(self.load_recipient(name)?.map(|s| s.view))
    }

    /// The keys a recipient's webhooks are signed with now (the newest first), and what its
    /// endpoint may reach.
    pub(crate) fn signing_keys(&self, name: &str) -> Result<(Vec<Vec<u8>>, Reach), Error> {
        let Some(stored) = self.load_recipient(name)? else {
            return Ok((Vec::new(), Reach::default()));
        };
        let now = unix_now();
        let mut keys = Vec::new();
        for s in stored.secrets.iter().rev() {
            if s.until.is_some_and(|u| u <= now) {
                continue;
            }
            let sealed = unhex(&s.sealed)
                .ok_or_else(|| Error::Internal("a sealed signing secret is not hex".into()))?;
            let key = self
                .vault
                .open_secret(SECRET_LABEL, &sealed)
                .ok_or_else(|| {
                    Error::Internal("a signing secret did not open under this key ring".into())
                })?;
            keys.push(key.to_vec());
        }
        Ok((
            keys,
            Reach {
                loopback: stored.view.allow_loopback,
                private: stored.view.allow_private,
            },
        ))
    }

    fn put_recipient(&self, stored: &Stored, batch: &mut vault::Batch) {
        batch.put(
            ks::REGISTER,
            stored.view.name.as_bytes().to_vec(),
            serde_json::to_vec(stored).expect("json"),
        );
    }

    /// Validates and applies `input` to `stored`; returns a generated secret to show once.
    fn apply_input(
        &self,
        actor: &Actor,
        stored: &mut Stored,
        input: RecipientInput,
    ) -> Result<Option<String>, Error> {
        let v = &mut stored.view;
        if (input.allow_loopback.is_some() || input.allow_private.is_some())
            && !matches!(actor.channel, Channel::Cli)
        {
            return Err(Error::BadRequest(
                "`allow_loopback` and `allow_private` are set by the operator at the command line (`steward recipients add|update`), not over the API".into(),
            ));
        }
        if let Some(r) = input.role {
            if r != "processor" && r != "controller" {
                return Err(Error::BadRequest(
                    "`role` is processor or controller".into(),
                ));
            }
            v.role = r;
        }
        if let Some(ps) = input.purposes {
            let known = self.purposes();
            for p in &ps {
                known.get(p).map_err(|_| {
                    Error::BadRequest(format!("`purposes`: no purpose `{p}` in purposes.toml"))
                })?;
            }
            v.purposes = ps;
        }
        if let Some(gs) = input.groups {
            for g in &gs {
                if !AccessGroup::ALL.iter().any(|a| group_name(*a) == g) {
                    return Err(Error::BadRequest(format!(
                        "`groups`: `{g}` is not a field group (one of {})",
                        AccessGroup::ALL
                            .iter()
                            .map(|a| group_name(*a))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
            v.groups = gs;
        }
        let words = |s: String, what: &str| -> Result<Option<String>, Error> {
            let s = s.trim().to_string();
            if s.len() > 500 || s.contains('\n') {
                return Err(Error::BadRequest(format!(
                    "`{what}` is one line of at most 500 characters"
                )));
            }
            Ok((!s.is_empty()).then_some(s))
        };
        if let Some(b) = input.legal_basis {
            v.legal_basis = words(b, "legal_basis")?;
        }
        if let Some(c) = input.contract {
            v.contract = words(c, "contract")?;
        }
        if let Some(c) = input.country {
            let c = c.trim().to_ascii_uppercase();
            if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase()) {
                return Err(Error::BadRequest(
                    "`country` is a two-letter ISO 3166 code (GB, IE, US...)".into(),
                ));
            }
            v.transfer_outside_uk_eea = !UK_EEA.contains(&c.as_str());
            v.country = Some(c);
        }
        if let Some(b) = input.allow_loopback {
            v.allow_loopback = b;
        }
        if let Some(b) = input.allow_private {
            v.allow_private = b;
        }
        let reach = Reach {
            loopback: v.allow_loopback,
            private: v.allow_private,
        };
        if let Some(e) = input.endpoint {
            v.endpoint = if e.trim().is_empty() {
                None
            } else {
                Some(
                    webhook::check_endpoint(&e, reach)
                        .map_err(|m| Error::BadRequest(format!("`endpoint`: {m}")))?,
                )
            };
        } else if let Some(e) = v.endpoint.clone() {
            // The allowances changed: the endpoint must still pass.
            webhook::check_endpoint(&e, reach)
                .map_err(|m| Error::BadRequest(format!("`endpoint`: {m}")))?;
        }
        let mut shown = None;
        let new_key = match (input.secret, input.rotate_secret) {
            (Some(_), true) => {
                return Err(Error::BadRequest(
                    "give a secret or ask for a new one, not both".into(),
                ))
            }
            (Some(text), false) => Some(
                webhook::parse_secret(&text)
                    .map_err(|m| Error::BadRequest(format!("`secret`: {m}")))?,
            ),
            (None, true) => {
                let (key, text) = webhook::new_secret()
                    .ok_or_else(|| Error::Internal("no random bytes".into()))?;
                shown = Some(text);
                Some(key)
            }
            // An endpoint without any secret gets one.
            (None, false) if stored.view.endpoint.is_some() && stored.secrets.is_empty() => {
                let (key, text) = webhook::new_secret()
                    .ok_or_else(|| Error::Internal("no random bytes".into()))?;
                shown = Some(text);
                Some(key)
            }
            (None, false) => None,
        };
        if let Some(key) = new_key {
            let now = unix_now();
            for old in stored.secrets.iter_mut() {
                if old.until.is_none() {
                    old.until = Some(now + ROTATION_OVERLAP_SECONDS);
                }
            }
            stored.secrets.retain(|s| s.until.is_none_or(|u| u > now));
            stored.secrets.push(SealedSecret {
                sealed: hex(&self.vault.seal_secret(SECRET_LABEL, &key)?),
                added: consent::now(),
                until: None,
            });
        }
        let now = unix_now();
        stored.view.signing_secrets = stored
            .secrets
            .iter()
            .filter(|s| s.until.is_none_or(|u| u > now))
            .count();
        stored.view.updated = consent::now();
        Ok(shown)
    }

    /// Registers a recipient. With an endpoint and no secret given, a secret is generated and
    /// returned this once.
    pub fn add_registered_recipient(
        &self,
        actor: &Actor,
        name: &str,
        input: RecipientInput,
    ) -> Result<Registered, Error> {
        self.audited(actor, "create.recipient", |trail| {
            self.require(actor, OBJECT, Action::Write)?;
            let name = valid_name(name)?;
            trail.note = Some(name.clone());
            if self.load_recipient(&name)?.is_some() {
                return Err(Error::Conflict(format!("a recipient named `{name}` is already registered; change it with `recipients update`")));
            }
            let now = consent::now();
            let mut stored = Stored {
                view: RecipientView {
                    name: name.clone(),
                    role: "processor".into(),
                    purposes: Vec::new(),
                    groups: Vec::new(),
                    legal_basis: None,
                    contract: None,
                    country: None,
                    transfer_outside_uk_eea: false,
                    endpoint: None,
                    allow_loopback: false,
                    allow_private: false,
                    signing_secrets: 0,
                    disabled: None,
                    created: now.clone(),
                    updated: now,
                },
                secrets: Vec::new(),
            };
            let secret = self.apply_input(actor, &mut stored, input)?;
            self.commit_audited(actor, "create.recipient", trail, |mut batch| {
                self.put_recipient(&stored, &mut batch);
                self.vault.apply_durably(batch)?;
                Ok(())
            })?;
            Ok(Registered { recipient: stored.view, secret })
        })
    }

    /// Changes a registered recipient (what `input` names); a new secret is returned once.
    pub fn update_registered_recipient(
        &self,
        actor: &Actor,
        name: &str,
        input: RecipientInput,
    ) -> Result<Registered, Error> {
        let (stored, secret) =
            self.change_recipient(actor, name, |stored| self.apply_input(actor, stored, input))?;
        Ok(Registered {
            recipient: stored.view,
            secret,
        })
    }

    /// Disables a recipient: exports to it are refused, and its notifications become tasks
    /// for a person. `enable` undoes it.
    pub fn set_recipient_disabled(
        &self,
        actor: &Actor,
        name: &str,
        reason: Option<&str>,
    ) -> Result<RecipientView, Error> {
        let (stored, ()) = self.change_recipient(actor, name, |stored| {
            stored.view.disabled = match reason {
                Some(r) => Some(Disabled {
                    at: consent::now(),
                    reason: valid_reason(r)?,
                }),
                None => None,
            };
            stored.view.updated = consent::now();
            Ok(())
        })?;
        Ok(stored.view)
    }

    /// One audited change of a registered recipient: `change` edits it, then it is stored.
    fn change_recipient<T>(
        &self,
        actor: &Actor,
        name: &str,
        change: impl FnOnce(&mut Stored) -> Result<T, Error>,
    ) -> Result<(Stored, T), Error> {
        self.audited(actor, "update.recipient", |trail| {
            self.require(actor, OBJECT, Action::Write)?;
            trail.note = Some(name.to_string());
            let mut stored = self.load_recipient(name)?.ok_or_else(|| missing(name))?;
            let out = change(&mut stored)?;
            self.commit_audited(actor, "update.recipient", trail, |mut batch| {
                self.put_recipient(&stored, &mut batch);
                self.vault.apply_durably(batch)?;
                Ok(())
            })?;
            Ok((stored, out))
        })
    }

    /// Disables a recipient whose endpoint answered 410 Gone (the delivery worker).
    pub(crate) fn disable_gone(&self, name: &str, batch: &mut vault::Batch) -> Result<(), Error> {
        if let Some(mut stored) = self.load_recipient(name)? {
            stored.view.disabled = Some(Disabled {
                at: consent::now(),
                reason: "its endpoint answered 410 Gone".into(),
            });
            stored.view.updated = consent::now();
            self.put_recipient(&stored, batch);
        }
        Ok(())
    }

    /// The register, by name.
    pub fn list_registered_recipients(&self, actor: &Actor) -> Result<Vec<RecipientView>, Error> {
        self.audited(actor, "read.recipients", |_| {
            self.require(actor, OBJECT, Action::Read)?;
            let mut out = Vec::new();
            for entry in self.vault.store().scan_prefix(ks::REGISTER, b"") {
                let (_, v) = entry.map_err(vault::Error::from)?;
                let s: Stored = serde_json::from_slice(&v).map_err(|e| {
                    Error::Internal(format!("recipient register entry unreadable: {e}"))
                })?;
                out.push(s.view);
            }
            Ok(out)
        })
    }

    /// One registered recipient.
    pub fn show_registered_recipient(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<RecipientView, Error> {
        self.audited(actor, "read.recipients", |trail| {
            self.require(actor, OBJECT, Action::Read)?;
            trail.note = Some(name.to_string());
            self.registered(name)?.ok_or_else(|| missing(name))
        })
    }

    /// The recipient's own reference for a subject: a keyed hash of the two, the same in
    /// every export to it and in its notifications, and different for every recipient (two
    /// recipients cannot link their lists through it).
    pub(crate) fn recipient_ref(&self, recipient: &str, id: &SubjectId) -> String {
        let mut data = recipient.as_bytes().to_vec();
        data.push(0);
        data.extend_from_slice(id.as_bytes());
        let h = self.vault.keys().keyed_hash("recipient-ref", &data);
        format!("r_{}", hex(&h[..16]))
    }

    /// Checks an export of `purpose` to `recipient` against the register; returns the field
    /// groups it may receive (empty: any).
    pub(crate) fn export_allowed(
        &self,
        recipient: &str,
        purpose: &str,
    ) -> Result<Vec<String>, Error> {
        let r = self
            .registered(recipient)?
            .ok_or_else(|| Error::Missing(format!("no recipient named `{recipient}` is registered; register it with `steward recipients add`")))?;
        if let Some(d) = &r.disabled {
            return Err(Error::BadRequest(format!(
                "recipient `{recipient}` is disabled ({}); enable it first",
                d.reason
            )));
        }
        if !r.purposes.is_empty() && !r.purposes.iter().any(|p| p == purpose) {
            return Err(Error::Forbidden {
                action: "export",
                object: format!(
                    "recipient {recipient} for purpose {purpose} (the register allows {})",
                    r.purposes.join(", ")
                ),
                fields: Vec::new(),
            });
        }
        Ok(r.groups)
    }

    /// Records, in `batch`, that `groups` of each subject in `ids` went to `recipient` today
    /// for `purpose`.
    pub(crate) fn stage_disclosures(
        &self,
        recipient: &str,
        purpose: &str,
        groups: &[String],
        ids: &[SubjectId],
        batch: &mut vault::Batch,
    ) -> Result<(), Error> {
        let today = consent::now()[..10].to_string();
        for id in ids {
            let mut list = self.recipients_of(id)?;
            match list
                .iter_mut()
                .find(|r| r.recipient == recipient && r.purpose.as_deref() == Some(purpose))
            {
                Some(r) => {
                    for g in groups {
                        if !r.groups.contains(g) {
                            r.groups.push(g.clone());
                        }
                    }
                    r.groups.sort();
                    r.last = Some(today.clone());
                }
                None => {
                    let mut gs = groups.to_vec();
                    gs.sort();
                    list.push(Recipient {
                        recipient: recipient.to_string(),
                        purpose: Some(purpose.to_string()),
                        since: today.clone(),
                        groups: gs,
                        last: Some(today.clone()),
                    });
                }
            }
            batch.put(
                ks::RECIPIENTS,
                id.as_bytes().to_vec(),
                serde_json::to_vec(&list).expect("json"),
            );
        }
        Ok(())
    }
}

fn missing(name: &str) -> Error {
    Error::Missing(format!("no recipient named `{name}` is registered"))
}

pub(crate) fn valid_reason(r: &str) -> Result<String, Error> {
    let r = r.trim();
    if r.is_empty() || r.len() > 500 || r.contains('\n') {
        return Err(Error::BadRequest(
            "the reason is one line of 1 to 500 characters".into(),
        ));
    }
    Ok(r.to_string())
}
