//! Authorisation decisions from the casbin policy files.
//!
//! `policies/model.conf` and `policies/policy.csv` are evaluated by casbin once, when the
//! files are loaded, for every role × object × action Steward knows (a finite table of
//! 6 × 16 × 7 cells). Requests are then answered from that table: the same decisions casbin
//! makes, without running its matcher engine on the hot path. Reloading the files rebuilds it.

use std::collections::HashSet;
use std::fmt;

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};

use crate::principals::Role;

/// Every object a rule may name: resources, and the field groups of subjects.
pub const OBJECTS: &[&str] = &[
    "subject:identity",
    "subject:contact",
    "subject:financial",
    "subject:special",
    "subject:profile",
    "subject:interactions",
    "subject:interaction_notes",
    "subject",
    "consent",
    "requests",
    "imports",
    "exports",
    "audit",
    "analytics",
    "recipients",
    "users",
    "keys",
];

/// An action a principal may be allowed on an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read.
    Read,
    /// Create or change.
    Write,
    /// Erase (crypto-shred).
    Erase,
    /// Export data out of Steward.
    Export,
    /// Import data into Steward.
    Import,
    /// Merge duplicate subjects.
    Merge,
    /// Administer (users, keys, backups).
    Admin,
}

impl Action {
    /// Every action, in a stable order.
    pub const ALL: [Action; 7] = [
        Action::Read,
        Action::Write,
        Action::Erase,
        Action::Export,
        Action::Import,
        Action::Merge,
        Action::Admin,
    ];

    /// The action's name in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Erase => "erase",
            Action::Export => "export",
            Action::Import => "import",
            Action::Merge => "merge",
            Action::Admin => "admin",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why policy files were rejected; names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A line of policy.csv is wrong.
    #[error("policy.csv line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// casbin rejected the model or the rules.
    #[error("model.conf or policy.csv rejected by casbin: {0}")]
    Casbin(String),
}

/// One object and the actions a role may take on it.
pub type Grant = (&'static str, Vec<Action>);

/// The decisions of one set of policy files.
#[derive(Debug, Clone)]
pub struct Policy {
    allowed: HashSet<(Role, &'static str, Action)>,
    rules: usize,
}

fn known_object(o: &str) -> bool {
    o == "*" || OBJECTS.contains(&o)
}

fn known_action(a: &str) -> bool {
    a == "*" || Action::ALL.iter().any(|x| x.as_str() == a)
}

impl Policy {
    /// Validates the files line by line, then lets casbin evaluate them for every cell.
    pub fn load(model_conf: &str, policy_csv: &str) -> Result<Policy, PolicyError> {
        let mut clean = String::new();
        let mut groups: HashSet<String> = HashSet::new();
        let mut rules = 0;
        let mut lines = Vec::new();
        for (i, raw) in policy_csv.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            lines.push((i + 1, cols));
        }
        // Names introduced as groups by `g` lines may appear as subjects of `p` lines.
        for (_, cols) in &lines {
            if cols[0] == "g" && cols.len() == 3 {
                groups.insert(cols[2].to_string());
            }
        }
        for (n, cols) in &lines {
            let err = |message: String| PolicyError::Line { line: *n, message };
            match cols[0] {
                "p" => {
                    if cols.len() != 4 {
                        return Err(err(format!(
                            "a rule is `p, role, object, action` ({} columns found)",
                            cols.len()
                        )));
                    }
                    if cols[1].parse::<Role>().is_err() && !groups.contains(cols[1]) {
                        return Err(err(format!("unknown role \"{}\"", cols[1])));
                    }
                    if !known_object(cols[2]) {
                        return Err(err(format!(
                            "unknown object \"{}\"; objects are {} or *",
                            cols[2],
                            OBJECTS.join(", ")
                        )));
                    }
                    if !known_action(cols[3]) {
                        return Err(err(format!(
                            "unknown action \"{}\"; actions are read, write, erase, export, import, merge, admin or *",
                            cols[3]
                        )));
                    }
                    rules += 1;
                }
                "g" => {
                    if cols.len() != 3 {
                        return Err(err(
                            "an inheritance line is `g, role, inherited-role`".into()
                        ));
                    }
                    if cols[1].parse::<Role>().is_err() && !groups.contains(cols[1]) {
                        return Err(err(format!("unknown role \"{}\"", cols[1])));
                    }
                }
                other => return Err(err(format!("lines start with p or g, not \"{other}\""))),
            }
            clean.push_str(&cols.join(", "));
            clean.push('\n');
        }
        let enforcer = futures_executor::block_on(async {
            let model = DefaultModel::from_str(model_conf).await?;
            Enforcer::new(model, StringAdapter::new(clean)).await
        })
        .map_err(|e| PolicyError::Casbin(e.to_string()))?;
        let mut allowed = HashSet::new();
        for role in Role::ALL {
            for object in OBJECTS {
                for action in Action::ALL {
                    let ok = enforcer
                        .enforce((role.as_str(), *object, action.as_str()))
                        .map_err(|e| PolicyError::Casbin(e.to_string()))?;
                    if ok {
                        allowed.insert((role, *object, action));
                    }
                }
            }
        }
        Ok(Policy { allowed, rules })
    }

    /// True when `role` may do `action` on `object`. Unknown objects are denied.
    pub fn allows(&self, role: Role, object: &str, action: Action) -> bool {
        OBJECTS
            .iter()
            .find(|o| **o == object)
            .is_some_and(|o| self.allowed.contains(&(role, *o, action)))
    }

    /// Number of `p` rules in the files.
    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// The decision table: for each role, each object with the actions it allows.
    pub fn table(&self) -> Vec<(Role, Vec<Grant>)> {
        Role::ALL
            .iter()
            .map(|role| {
                let objects = OBJECTS
                    .iter()
                    .filter_map(|o| {
                        let acts: Vec<Action> = Action::ALL
                            .into_iter()
                            .filter(|a| self.allowed.contains(&(*role, *o, *a)))
                            .collect();
                        (!acts.is_empty()).then_some((*o, acts))
                    })
                    .collect();
                (*role, objects)
            })
            .collect()
    }
}
