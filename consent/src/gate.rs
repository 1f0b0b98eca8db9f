//! The purpose gate: a fold over one subject's ledger.

use serde::Serialize;

use crate::ledger::{ConsentEvent, EventKind};
use crate::purposes::{Basis, Purpose};

/// The gate's answer, with what decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// May the purpose process the subject?
    pub allowed: bool,
    /// A stable code: `consent_given`, `no_consent`, `consent_withdrawn`, `consent_refused`,
    /// `consent_expired`, `objected`, `restricted`, `erased`, `legitimate_interests`, or the
    /// basis (`contract`, `legal_obligation`...).
    pub reason: String,
    /// The ledger event that decided it, if one did.
    pub deciding_event: Option<ConsentEvent>,
}

fn decision(allowed: bool, reason: &str, event: Option<&ConsentEvent>) -> Decision {
    Decision {
        allowed,
        reason: reason.to_string(),
        deciding_event: event.cloned(),
    }
}

/// Decides whether `purpose` may process a subject at time `at` (UTC RFC 3339, as the ledger
/// writes it), from the subject's events (any order; only those effective at `at` count).
///
/// In order: an erased subject is never processed; a restriction (latest of restricted /
/// unrestricted, on any purpose) blocks everything; an objection blocks the purpose it names
/// and, when that purpose is direct marketing, every marketing purpose, until a later
/// `given`/`renewed` for the purpose asked about; then the basis: consent needs the latest of
/// given / renewed / refused / withdrawn / expired to be given or renewed and not past its
/// expiry; legitimate interests allow unless the subject opted out (withdrawn or refused);
/// the other bases allow.
pub fn decide(
    purpose: &Purpose,
    events: &[ConsentEvent],
    erased: bool,
    at: &str,
    marketing: &dyn Fn(&str) -> bool,
) -> Decision {
    if erased {
        return decision(false, "erased", None);
    }
    let mut effective: Vec<&ConsentEvent> =
        events.iter().filter(|e| e.time.as_str() <= at).collect();
    effective.sort_by(|a, b| a.time.cmp(&b.time).then(a.seq.cmp(&b.seq)));
    let latest =
        |pred: &dyn Fn(&ConsentEvent) -> bool| effective.iter().rev().copied().find(|e| pred(e));

    if let Some(e) = latest(&|e| matches!(e.event, EventKind::Restricted | EventKind::Unrestricted))
    {
        if e.event == EventKind::Restricted {
            return decision(false, "restricted", Some(e));
        }
    }
    let objection = latest(&|e| {
        e.event == EventKind::Objected
            && (e.purpose == purpose.name || (purpose.marketing && marketing(&e.purpose)))
    });
    if let Some(obj) = objection {
        let lifted = effective.iter().any(|e| {
            e.purpose == purpose.name
                && matches!(e.event, EventKind::Given | EventKind::Renewed)
                && (e.time.as_str(), e.seq) > (obj.time.as_str(), obj.seq)
        });
        if !lifted {
            return decision(false, "objected", Some(obj));
        }
    }
    let state = latest(&|e| {
        e.purpose == purpose.name
            && matches!(
                e.event,
                EventKind::Given
                    | EventKind::Renewed
                    | EventKind::Refused
                    | EventKind::Withdrawn
                    | EventKind::Expired
            )
    });
    match purpose.basis {
        Basis::Consent => match state {
            None => decision(false, "no_consent", None),
            Some(e) => match e.event {
                EventKind::Given | EventKind::Renewed => {
                    if e.expires.as_deref().is_some_and(|x| at >= x) {
                        decision(false, "consent_expired", Some(e))
                    } else {
                        decision(true, "consent_given", Some(e))
                    }
                }
                EventKind::Refused => decision(false, "consent_refused", Some(e)),
                EventKind::Expired => decision(false, "consent_expired", Some(e)),
                _ => decision(false, "consent_withdrawn", Some(e)),
            },
        },
        Basis::LegitimateInterests => match state {
            Some(e)
                if matches!(e.event, EventKind::Withdrawn | EventKind::Refused)
                    && purpose.opt_out =>
            {
                decision(false, "opted_out", Some(e))
            }
            _ => decision(true, "legitimate_interests", None),
        },
        Basis::Contract => decision(true, "contract", None),
        Basis::LegalObligation => decision(true, "legal_obligation", None),
        Basis::VitalInterests => decision(true, "vital_interests", None),
        Basis::PublicTask => decision(true, "public_task", None),
    }
}
