//! Policy files: the defaults shipped in the binary, and each data directory's own copy.
//!
//! `init` copies the policy files into `DIR/policies/`; from then on that copy is what the
//! directory runs under (field ids in `schema.toml` must stay stable with the data they
//! describe). Admins edit the copy and run `steward policy check`.

use std::fs;
use std::path::Path;

use domain::Schema;

use crate::error::Error;

/// The folder inside a data directory that holds its policy files.
pub const DIR: &str = "policies";

/// The policy files shipped with Steward (the repository's `policies/` folder).
pub const DEFAULT_POLICIES: &[(&str, &str)] = &[
    ("schema.toml", include_str!("../../policies/schema.toml")),
    ("model.conf", include_str!("../../policies/model.conf")),
    ("policy.csv", include_str!("../../policies/policy.csv")),
    (
        "purposes.toml",
        include_str!("../../policies/purposes.toml"),
    ),
    (
        "retention.toml",
        include_str!("../../policies/retention.toml"),
    ),
    (
        "holidays.toml",
        include_str!("../../policies/holidays.toml"),
    ),
    (
        "organisation.toml",
        include_str!("../../policies/organisation.toml"),
    ),
    ("README.md", include_str!("../../policies/README.md")),
];

/// A set of policy files in memory.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    files: Vec<(String, String)>,
    origin: String,
}

impl PolicyFiles {
    /// The built-in defaults.
    pub fn defaults() -> PolicyFiles {
        PolicyFiles {
            files: DEFAULT_POLICIES
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            origin: "built-in defaults".into(),
        }
    }

    /// Reads the policy files from a folder; every file the defaults have must be there.
    pub fn load(dir: &Path) -> Result<PolicyFiles, Error> {
        let mut files = Vec::new();
        for (name, _) in DEFAULT_POLICIES.iter().filter(|(n, _)| *n != "README.md") {
            let path = dir.join(name);
            let text = fs::read_to_string(&path).map_err(|e| {
                Error::BadRequest(format!("cannot read policy file {}: {e}", path.display()))
            })?;
            files.push((name.to_string(), text));
        }
        Ok(PolicyFiles {
            files,
            origin: dir.display().to_string(),
        })
    }

    /// Where the files came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn text(&self, name: &str) -> &str {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
            .unwrap_or_default()
    }

    /// Parses and validates `schema.toml`.
    pub fn schema(&self) -> Result<Schema, Error> {
        Schema::from_toml(self.text("schema.toml"))
            .map_err(|e| Error::Policy(format!("{}/schema.toml: {e}", self.origin)))
    }

    /// Parses and validates `purposes.toml` against the schema.
    pub fn purposes(&self, schema: &Schema) -> Result<consent::Purposes, Error> {
        consent::Purposes::from_toml(self.text("purposes.toml"), schema)
            .map_err(|e| Error::Policy(format!("{}/{e}", self.origin)))
    }

    /// The text of one policy file (organisation.toml, retention.toml).
    pub fn text_of(&self, name: &str) -> &str {
        self.text(name)
    }

    /// Parses the casbin model and rules and computes the decision table.
    pub fn policy(&self) -> Result<access_control::Policy, Error> {
        access_control::Policy::load(self.text("model.conf"), self.text("policy.csv"))
            .map_err(|e| Error::Policy(format!("{}: {e}", self.origin)))
    }

    /// The same files with one replaced (to check an edit before it is written).
    pub(crate) fn with_text(mut self, name: &str, text: &str) -> PolicyFiles {
        for (n, t) in &mut self.files {
            if n == name {
                *t = text.to_string();
            }
        }
        self
    }

    /// Writes the files into a folder.
    pub(crate) fn write_to(&self, dir: &Path) -> Result<(), Error> {
        fs::create_dir_all(dir).map_err(|e| vault::Error::Io {
            context: format!("creating {}", dir.display()),
            source: e,
        })?;
        for (name, text) in &self.files {
            let path = dir.join(name);
            fs::write(&path, text).map_err(|e| vault::Error::Io {
                context: format!("writing {}", path.display()),
                source: e,
            })?;
        }
        Ok(())
    }
}
