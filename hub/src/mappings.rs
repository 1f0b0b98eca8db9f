//! Mapping files kept in the data directory (`mappings/NAME.toml`), so that an import started
//! over HTTP can name one: stored, listed and read back by the people who may import.
//!
//! A mapping file holds column names, field names, transforms and constants; no row of any
//! file. It is validated before it is stored, and stored whole or not at all (written beside
//! and renamed into place).

use std::path::PathBuf;

use access_control::Action;
use importers::MappingFile;

use crate::{Actor, Error, Hub};

/// The folder of the data directory that holds mapping files.
pub const MAPPINGS_DIR: &str = "mappings";

/// The largest mapping file accepted, in bytes.
pub const MAX_MAPPING_BYTES: usize = 64 * 1024;

/// Why a mapping name is refused, or `None` when it is a good one.
fn name_problem(name: &str) -> Option<&'static str> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    (!ok).then_some("a mapping name: 1 to 64 letters, digits, - and _")
}

impl Hub {
    fn mappings_dir(&self) -> PathBuf {
        self.data_dir().join(MAPPINGS_DIR)
    }

    fn mapping_path(&self, name: &str) -> Result<PathBuf, Error> {
        if let Some(problem) = name_problem(name) {
            return Err(Error::BadRequest(format!("mapping: {problem}")));
        }
        Ok(self.mappings_dir().join(format!("{name}.toml")))
    }

    /// A stored mapping file, parsed, with its text (part of an import's fingerprint).
    pub fn load_mapping(&self, name: &str) -> Result<(MappingFile, String), Error> {
        let path = self.mapping_path(name)?;
        let text = std::fs::read_to_string(&path).map_err(|_| {
            Error::BadRequest(format!(
                "mapping: no mapping \"{name}\" in the data directory's {MAPPINGS_DIR}/ folder"
            ))
        })?;
        let file = MappingFile::from_toml(&text).map_err(|e| {
            Error::BadRequest(format!(
                "mapping: the mapping file \"{name}\" is invalid: {e}"
            ))
        })?;
        Ok((file, text))
    }

    /// Stores (or replaces) a mapping file under `name`, after checking that it parses.
    pub fn put_mapping(&self, actor: &Actor, name: &str, text: &str) -> Result<(), Error> {
        self.audited(actor, "mapping.put", |_| {
            self.require(actor, "imports", Action::Import)?;
            let path = self.mapping_path(name)?;
            if text.len() > MAX_MAPPING_BYTES {
                return Err(Error::BadRequest(format!(
                    "mapping: larger than {MAX_MAPPING_BYTES} bytes"
                )));
            }
            let mapping = MappingFile::from_toml(text).map_err(|e| {
                Error::BadRequest(format!("mapping: not a valid mapping file: {e}"))
            })?;
            // An empty file parses, and would store a mapping that changes nothing.
            if mapping.columns.is_empty()
                && mapping.constants.is_empty()
                && mapping.survivorship.is_empty()
                && mapping.drop_invalid.is_empty()
                && mapping.jurisdiction.is_none()
            {
                return Err(Error::BadRequest(
                    "mapping: the file sets nothing (no [columns], [constants], [survivorship], drop_invalid or jurisdiction)".into(),
                ));
            }
            let dir = self.mappings_dir();
            let io = |e: std::io::Error| Error::Internal(format!("storing the mapping file: {e}"));
            std::fs::create_dir_all(&dir).map_err(io)?;
            let part = dir.join(format!(".{name}.toml.part"));
            std::fs::write(&part, text).map_err(io)?;
            std::fs::rename(&part, &path).map_err(io)
        })
    }

    /// The names of the stored mapping files, sorted.
    pub fn list_mappings(&self, actor: &Actor) -> Result<Vec<String>, Error> {
        self.audited(actor, "mapping.list", |_| {
            self.require(actor, "imports", Action::Import)?;
            let dir = self.mappings_dir();
            let mut names: Vec<String> = match std::fs::read_dir(&dir) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let file = e.file_name().to_string_lossy().into_owned();
                        let name = file.strip_suffix(".toml")?.to_string();
                        name_problem(&name).is_none().then_some(name)
                    })
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(Error::Internal(format!("reading the mappings: {e}"))),
            };
            names.sort();
            Ok(names)
        })
    }
}
