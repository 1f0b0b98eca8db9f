//! Restoring a backup, through the hub like every other operation on a data directory.
//!
//! The backup is restored into a temporary directory beside the target; the erasures made
//! after the backup are applied again there (from the live directory's erasure journal, or,
//! when the live directory is lost, from an exported audit checkpoint kept off-host, which
//! lists the ids of everyone erased up to it, signed with the log's key); only then does the
//! directory take the target's name. A restore that fails anywhere leaves nothing behind that
//! could serve an erased person's data.

use std::io::Read;
use std::path::Path;

use domain::SubjectId;
use serde::{Deserialize, Serialize};
use vault::Unlock;

use crate::{Error, Hub};

/// What `steward audit checkpoint export --out FILE` writes: a signed checkpoint of the audit log
/// with the ids of every subject erased up to it (ids only, nothing personal) and the log's
/// signature over that list. Kept off-host, it serves `--against` (the log was not rolled
/// back) and a restore (erasures made after an older backup stay erased).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedCheckpoint {
    /// The checkpoint.
    #[serde(flatten)]
    pub checkpoint: audit::Checkpoint,
    /// Every subject erased up to it.
    #[serde(default)]
    pub erasures: Vec<SubjectId>,
    /// The log key's signature over the list, bound to the checkpoint (hex).
    #[serde(default)]
    pub erasures_signature: String,
}

/// The signed bytes of an erasure list: its ids, sorted, one per line.
fn erasure_bytes(ids: &[SubjectId]) -> Vec<u8> {
    let mut sorted: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    sorted.sort();
    sorted.dedup();
    sorted.join("\n").into_bytes()
}

impl ExportedCheckpoint {
    /// True when the checkpoint and the erasure list carry this log key's valid signatures.
    pub fn valid(&self) -> bool {
        self.checkpoint.signature_valid()
            && self.checkpoint.attachment_valid(
                "erasures",
                &erasure_bytes(&self.erasures),
                &self.erasures_signature,
            )
    }
}

/// Erasures made after a backup, applied again when it is restored.
#[derive(Debug, Clone)]
pub enum LaterErasures {
    /// None given.
    None,
    /// The live directory's erasure journal (its text).
    Journal(String),
    /// An exported checkpoint (see [`ExportedCheckpoint`]), already checked with
    /// [`ExportedCheckpoint::valid`].
    Checkpoint(Box<ExportedCheckpoint>),
}

impl Hub {
    /// An exported checkpoint: a new signed checkpoint of the audit log, with the ids of
    /// every subject erased so far and the log's signature over them.
    pub fn export_checkpoint(&self, actor: &crate::Actor) -> Result<ExportedCheckpoint, Error> {
        let checkpoint = self.audit_checkpoint(actor)?;
        let erasures = self.vault.journaled_erasures()?;
        let erasures_signature =
            self.audit
                .sign_attachment(&checkpoint, "erasures", &erasure_bytes(&erasures));
        Ok(ExportedCheckpoint {
            checkpoint,
            erasures,
            erasures_signature,
        })
    }

    /// Restores the backup read from `input` into `dir` (absent or empty), applying `later`
    /// erasures again before the directory takes its name (see the module documentation).
    pub fn restore_backup(
        input: &mut dyn Read,
        dir: &Path,
        unlock: &Unlock,
        later: &LaterErasures,
    ) -> Result<vault::BackupReport, Error> {
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(Error::BadRequest(format!(
                "{} exists and is not empty: restore into a new directory",
                dir.display()
            )));
        }
        if let LaterErasures::Checkpoint(cp) = later {
            if !cp.valid() {
                return Err(Error::BadRequest(
                    "the checkpoint's signatures do not verify: it was altered, or it was not exported by `steward audit checkpoint`".into(),
                ));
            }
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "data".into());
        let tmp = dir.with_file_name(format!(".{name}.restoring-{}", std::process::id()));
        let result = (|| -> Result<vault::BackupReport, Error> {
            let report = vault::Vault::restore(input, &tmp, unlock)?;
            let ids: Vec<SubjectId> = match later {
                LaterErasures::None => Vec::new(),
                LaterErasures::Journal(text) => text
                    .lines()
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
                    .collect(),
                LaterErasures::Checkpoint(cp) => cp.erasures.clone(),
            };
            vault::Vault::journal_erasures_in(&tmp, &ids)?;
            // Opening it replays the journal's erasures and checks that it unseals.
            let hub = Hub::open(&tmp, unlock)?;
            if let LaterErasures::Checkpoint(cp) = later {
                if hub.audit.public_key() != cp.checkpoint.public_key {
                    return Err(Error::BadRequest(
                        "the checkpoint was exported by another Steward data directory (its log key is not this backup's)".into(),
                    ));
                }
            }
            drop(hub);
            if dir.exists() {
                std::fs::remove_dir(dir).map_err(|e| {
                    Error::Internal(format!("replacing the empty {}: {e}", dir.display()))
                })?;
            }
            std::fs::rename(&tmp, dir).map_err(|e| {
                Error::Internal(format!(
                    "moving the restored data to {}: {e}",
                    dir.display()
                ))
            })?;
            Ok(report)
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }
}
