//! The purpose gate: a fold over one subject's ledger.

use serde::{Deserialize, Serialize};

use crate::ledger::{ConsentEvent, EventKind};
use crate::purposes::{Basis, Purpose};

/// The gate's answer, with what decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// May the purpose process the subject?
    pub allowed: bool,
    /// A stable code: `consent_given`, `no_consent`, `consent_withdrawn`, `consent_refused`,
    /// `consent_expired`, `objected`, `opted_out`, `restricted`, `erased`,
    /// `legitimate_interests`, or the basis (`contract`, `legal_obligation`...).
    pub reason: String,
    /// The ledger event that decided it, if one did.
    pub deciding_event: Option<ConsentEvent>,
}

/// What the gate reads of an event. [`ConsentEvent`] has it all; [`GateEvent`] is the same
/// few fields parsed without the rest, for passes over the whole ledger.
pub trait GateFacts {
    /// Recording order.
    fn seq(&self) -> u64;
    /// Purpose name.
    fn purpose(&self) -> &str;
    /// What happened.
    fn kind(&self) -> EventKind;
    /// Effective time (ledger UTC form).
    fn time(&self) -> &str;
    /// Expiry, if any.
    fn expires(&self) -> Option<&str>;
}

/// The fields of a ledger event the gate needs, read from its JSON without the others.
#[derive(Debug, Clone, Deserialize)]
pub struct GateEvent {
    seq: u64,
    purpose: String,
    event: EventKind,
    time: String,
    #[serde(default)]
    expires: Option<String>,
}

/// Both event forms carry the gate's facts under the same field names.
macro_rules! gate_facts {
    ($($ty:ty),+) => {$(
        impl GateFacts for $ty {
            fn seq(&self) -> u64 {
                self.seq
            }
            fn purpose(&self) -> &str {
                &self.purpose
            }
            fn kind(&self) -> EventKind {
                self.event
            }
            fn time(&self) -> &str {
                &self.time
            }
            fn expires(&self) -> Option<&str> {
                self.expires.as_deref()
            }
        }
    )+};
}

gate_facts!(ConsentEvent, GateEvent);

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
    let (allowed, reason, deciding) = verdict(purpose, events, erased, at, marketing);
    Decision {
        allowed,
        reason: reason.to_string(),
        deciding_event: deciding.cloned(),
    }
}

/// [`decide`] on any events: (allowed, reason code, deciding event).
pub fn verdict<'e, E: GateFacts>(
    purpose: &Purpose,
    events: &'e [E],
    erased: bool,
    at: &str,
    marketing: &dyn Fn(&str) -> bool,
) -> (bool, &'static str, Option<&'e E>) {
    if erased {
        return (false, "erased", None);
    }
    let mut effective: Vec<&E> = events.iter().filter(|e| e.time() <= at).collect();
    effective.sort_by(|a, b| a.time().cmp(b.time()).then(a.seq().cmp(&b.seq())));
    let latest = |pred: &dyn Fn(&E) -> bool| effective.iter().rev().copied().find(|e| pred(e));

    if let Some(e) =
        latest(&|e| matches!(e.kind(), EventKind::Restricted | EventKind::Unrestricted))
    {
        if e.kind() == EventKind::Restricted {
            return (false, "restricted", Some(e));
        }
    }
    let objection = latest(&|e| {
        e.kind() == EventKind::Objected
            && (e.purpose() == purpose.name || (purpose.marketing && marketing(e.purpose())))
    });
    if let Some(obj) = objection {
        let lifted = effective.iter().any(|e| {
            e.purpose() == purpose.name
                && matches!(e.kind(), EventKind::Given | EventKind::Renewed)
                && (e.time(), e.seq()) > (obj.time(), obj.seq())
        });
        if !lifted {
            return (false, "objected", Some(obj));
        }
    }
    let state = latest(&|e| {
        e.purpose() == purpose.name
            && matches!(
                e.kind(),
                EventKind::Given
                    | EventKind::Renewed
                    | EventKind::Refused
                    | EventKind::Withdrawn
                    | EventKind::Expired
            )
    });
    match purpose.basis {
        Basis::Consent => match state {
            None => (false, "no_consent", None),
            Some(e) => match e.kind() {
                EventKind::Given | EventKind::Renewed => {
                    if e.expires().is_some_and(|x| at >= x) {
                        (false, "consent_expired", Some(e))
                    } else {
                        (true, "consent_given", Some(e))
                    }
                }
                EventKind::Refused => (false, "consent_refused", Some(e)),
                EventKind::Expired => (false, "consent_expired", Some(e)),
                _ => (false, "consent_withdrawn", Some(e)),
            },
        },
        Basis::LegitimateInterests => match state {
            Some(e)
                if matches!(e.kind(), EventKind::Withdrawn | EventKind::Refused)
                    && purpose.opt_out =>
            {
                (false, "opted_out", Some(e))
            }
            _ => (true, "legitimate_interests", None),
        },
        Basis::Contract => (true, "contract", None),
        Basis::LegalObligation => (true, "legal_obligation", None),
        Basis::VitalInterests => (true, "vital_interests", None),
        Basis::PublicTask => (true, "public_task", None),
    }
}
