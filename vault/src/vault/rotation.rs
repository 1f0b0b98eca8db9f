//! Resumable rotation of the key-encryption key.

use super::*;

impl Vault {
    /// Rotates to a new KEK version (or resumes an interrupted rotation): every wrapped data
    /// key is rewrapped in durable batches; field ciphertext is untouched. Safe to interrupt
    /// at any point; run again to finish.
    pub fn rotate(&self, options: &RotationOptions) -> Result<RotationReport> {
        let _gate = self.gate.read().expect("write gate");
        let _rmw = self.rmw_lock()?;
        let (mut state, resumed) = match self.store.get(ks::META, META_ROTATION)? {
            Some(bytes) => (
                serde_json::from_slice::<RotationState>(&bytes).map_err(|_| Error::Corrupt {
                    what: "rotation progress".into(),
                })?,
                true,
            ),
            None => {
                let target = self.kek_version.load(Ordering::SeqCst) + 1;
                let state = RotationState {
                    target,
                    next_slot: 0,
                };
                let mut b = Batch::new();
                b.put(
                    ks::META,
                    META_ROTATION,
                    serde_json::to_vec(&state).expect("json"),
                );
                b.put(ks::META, META_KEK, target.to_le_bytes().to_vec());
                self.store.apply(b)?;
                self.store.flush()?;
                // From now on new data keys are wrapped with the new version.
                self.kek_version.store(target, Ordering::SeqCst);
                (state, false)
            }
        };
        let mut report = RotationReport {
            target_version: state.target,
            resumed,
            rewrapped: 0,
            skipped: 0,
            complete: false,
        };
        let total = self.slots.len()?;
        let mut batches = 0;
        while state.next_slot < total {
            if options.max_batches.is_some_and(|m| batches >= m) {
                return Ok(report);
            }
            let count = options.batch_size.max(1).min(total - state.next_slot);
            let run = self.slots.read_run(state.next_slot, count)?;
            let nonces = self.random(count as usize * NONCE_LEN)?;
            for i in 0..count as usize {
                let slot: &[u8; SLOT] =
                    run[i * SLOT..(i + 1) * SLOT].try_into().expect("slot size");
                let Some(subject) =
                    SubjectId::from_slice(&slot[..16]).filter(|s| s.as_bytes() != &ZERO_ID)
                else {
                    report.skipped += 1;
                    continue;
                };
                match self.unwrap_slot(&subject, slot) {
                    Some((v, _, _)) if v == state.target => report.skipped += 1,
                    Some((_, half, dek)) => {
                        let nonce = &nonces[i * NONCE_LEN..(i + 1) * NONCE_LEN];
                        let new_half = self.wrap_dek(&subject, dek.as_ref(), nonce, state.target);
                        self.slots
                            .write_half(state.next_slot + i as u64, 1 - half, &new_half)?;
                        report.rewrapped += 1;
                    }
                    None => {
                        tracing::warn!(
                            slot = state.next_slot + i as u64,
                            "data-key slot unreadable during rotation; left as is"
                        );
                        report.skipped += 1;
                    }
                }
            }
            self.slots.sync()?;
            state.next_slot += count;
            self.store.put(
                ks::META,
                META_ROTATION,
                &serde_json::to_vec(&state).expect("json"),
            )?;
            self.store.flush()?;
            batches += 1;
        }
        self.store.delete(ks::META, META_ROTATION)?;
        self.store.flush()?;
        report.complete = true;
        Ok(report)
    }
}
