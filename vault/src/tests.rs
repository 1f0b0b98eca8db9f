use std::sync::Arc;

use domain::{FieldId, IndexKind, RecordKind, Schema, SubjectId, SubjectKind, Value};

use super::*;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::from_toml(include_str!("../../policies/schema.toml")).unwrap())
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    unlock: Unlock,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let identity = tmp.path().join("identity.txt");
    Vault::init(&dir, &SealTo::Identity(identity.clone())).unwrap();
    Fixture {
        dir,
        unlock: Unlock::Identity(identity),
        _tmp: tmp,
    }
}

fn open(f: &Fixture) -> Vault {
    Vault::open(&f.dir, &f.unlock, schema()).unwrap()
}

fn person(schema: &Schema, n: usize) -> NewSubject {
    let json = serde_json::json!({
        "given_name": format!("Given{n}"),
        "family_name": format!("Family{n}"),
        "email": format!("person{n}@example.org"),
        "phone": format!("+44207946{:04}", n % 10_000),
        "birth_date": "1970-01-31",
        "notes": format!("note number {n}"),
        "tags": ["a", "b"],
        "gift_aid_declared": true,
    });
    let fields = schema
        .parse_object(RecordKind::Subject, json.as_object().unwrap())
        .unwrap();
    let gift = serde_json::json!({"amount": "10.00", "currency": "GBP", "date": "2024-01-02"});
    let gift = schema
        .parse_object(RecordKind::Gift, gift.as_object().unwrap())
        .unwrap();
    NewSubject {
        kind: SubjectKind::Individual,
        fields,
        gifts: vec![gift],
    }
}

fn field(schema: &Schema, name: &str) -> FieldId {
    schema.field(RecordKind::Subject, name).unwrap().id
}

fn raw_get(vault: &Vault, id: &SubjectId) -> Vec<u8> {
    vault
        .store()
        .get(keyspaces::SUBJECTS, id.as_bytes())
        .unwrap()
        .unwrap()
}

fn raw_put(vault: &Vault, id: &SubjectId, bytes: &[u8]) {
    vault
        .store()
        .put(keyspaces::SUBJECTS, id.as_bytes(), bytes)
        .unwrap();
}

#[test]
fn subjects_and_gifts_round_trip() {
    let f = fixture();
    let vault = open(&f);
    let s = vault.schema().clone();
    let items: Vec<NewSubject> = (0..50).map(|n| person(&s, n)).collect();
    let ids = vault.create_subjects(&items).unwrap();
    for (id, item) in ids.iter().zip(&items) {
        let rec = vault.read_subject(id, &|_| true).unwrap();
        let mut expected = item.fields.clone();
        expected.sort_by_key(|(f, _)| *f);
        assert_eq!(rec.fields, expected);
        assert_eq!(rec.version, 1);
        let gifts = vault.list_gifts(id).unwrap();
        assert_eq!(gifts.len(), 1);
        assert_eq!(gifts[0].fields.len(), 3);
    }
    // Only the wanted fields are decrypted; the others are listed by id.
    let email = field(&s, "email");
    let rec = vault.read_subject(&ids[0], &|f| f == email).unwrap();
    assert_eq!(rec.fields.len(), 1);
    assert_eq!(rec.other_fields.len(), items[0].fields.len() - 1);
}

#[test]
fn tampered_ciphertext_is_rejected() {
    let f = fixture();
    let vault = open(&f);
    let ids = vault.create_subjects(&[person(vault.schema(), 1)]).unwrap();
    let mut bytes = raw_get(&vault, &ids[0]);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    raw_put(&vault, &ids[0], &bytes);
    let err = vault.read_subject(&ids[0], &|_| true).unwrap_err();
    assert!(matches!(err, Error::Tampered { .. }), "{err}");
    assert!(err.to_string().contains("integrity"));
}

#[test]
fn ciphertext_moved_to_another_subject_is_rejected() {
    let f = fixture();
    let vault = open(&f);
    let s = vault.schema().clone();
    let ids = vault
        .create_subjects(&[person(&s, 1), person(&s, 2)])
        .unwrap();
    // Give subject B the record of subject A, with B's own slot reference so the key unwraps.
    let a = raw_get(&vault, &ids[0]);
    let b = raw_get(&vault, &ids[1]);
    let (hb, _) = record::header(&b).unwrap();
    let (_, body_a) = record::header(&a).unwrap();
    let mut moved = Vec::new();
    moved.extend_from_slice(&[1, a[1]]);
    record::put_varint(&mut moved, hb.slot);
    record::put_varint(&mut moved, 1);
    moved.extend_from_slice(&a[body_a - 12..]);
    raw_put(&vault, &ids[1], &moved);
    let err = vault.read_subject(&ids[1], &|_| true).unwrap_err();
    assert!(matches!(err, Error::Tampered { .. }), "{err}");
    // And a record pointing at another subject's key slot fails on the key itself.
    raw_put(&vault, &ids[1], &a);
    let err = vault.read_subject(&ids[1], &|_| true).unwrap_err();
    assert!(
        matches!(err, Error::Tampered { ref what, .. } if what == "data key"),
        "{err}"
    );
}

#[test]
fn ciphertext_moved_to_another_field_is_rejected() {
    let f = fixture();
    let vault = open(&f);
    let s = vault.schema().clone();
    let ids = vault.create_subjects(&[person(&s, 1)]).unwrap();
    let bytes = raw_get(&vault, &ids[0]);
    // Relabel the given_name ciphertext (field 2) as field 3 (middle_name): one-byte varints.
    let (_, mut pos) = record::header(&bytes).unwrap();
    let mut moved = bytes.clone();
    let mut relabelled = false;
    while pos < bytes.len() {
        let at = pos;
        let id = record::get_varint(&bytes, &mut pos).unwrap();
        let len = record::get_varint(&bytes, &mut pos).unwrap() as usize;
        if id == u64::from(field(&s, "given_name").0) {
            moved[at] = field(&s, "middle_name").0 as u8;
            relabelled = true;
        }
        pos += len;
    }
    assert!(relabelled);
    raw_put(&vault, &ids[0], &moved);
    let err = vault.read_subject(&ids[0], &|_| true).unwrap_err();
    assert!(
        matches!(err, Error::Tampered { ref what, .. } if what.starts_with("field")),
        "{err}"
    );
}

#[test]
fn blind_index_finds_by_normalised_email_and_phone() {
    let f = fixture();
    let vault = open(&f);
    let s = vault.schema().clone();
    let ids = vault
        .create_subjects(&[person(&s, 7), person(&s, 8)])
        .unwrap();
    assert_eq!(
        vault
            .lookup(IndexKind::Email, "person7@example.org")
            .unwrap(),
        vec![ids[0]]
    );
    assert_eq!(
        vault.lookup(IndexKind::Phone, "+442079460008").unwrap(),
        vec![ids[1]]
    );
    assert!(vault
        .lookup(IndexKind::Email, "nobody@example.org")
        .unwrap()
        .is_empty());
    // Updating the email moves the index entry.
    let email = field(&s, "email");
    let new = Value::Email(domain::Email::parse("moved@example.org").unwrap());
    assert_eq!(
        vault
            .update_subject(&ids[0], &[(email, Some(new))], Some(1))
            .unwrap(),
        2
    );
    assert!(vault
        .lookup(IndexKind::Email, "person7@example.org")
        .unwrap()
        .is_empty());
    assert_eq!(
        vault.lookup(IndexKind::Email, "moved@example.org").unwrap(),
        vec![ids[0]]
    );
    // A stale version is refused.
    let err = vault
        .update_subject(&ids[0], &[(email, None)], Some(1))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Conflict {
            expected: 1,
            found: 2,
            ..
        }
    ));
}

#[test]
fn erased_subject_cannot_be_read_found_or_decrypted_from_the_files() {
    let f = fixture();
    let vault = open(&f);
    let s = vault.schema().clone();
    let ids = vault
        .create_subjects(&[person(&s, 1), person(&s, 2)])
        .unwrap();
    let slot_before = {
        let (h, _) = record::header(&raw_get(&vault, &ids[0])).unwrap();
        h.slot
    };
    // Keep the ciphertext as an attacker with an old copy of the store would.
    let old_record = raw_get(&vault, &ids[0]);
    vault.erase_subject(&ids[0]).unwrap();
    assert!(matches!(
        vault.read_subject(&ids[0], &|_| true),
        Err(Error::Erased(_))
    ));
    assert!(vault
        .lookup(IndexKind::Email, "person1@example.org")
        .unwrap()
        .is_empty());
    assert!(matches!(vault.list_gifts(&ids[0]), Err(Error::Erased(_))));
    // The data key is gone from the slot file: the old ciphertext no longer opens.
    let slot = vault.slots().read(slot_before).unwrap();
    assert!(slot.iter().all(|&b| b == 0));
    assert!(vault.unwrap_slot(&ids[0], &slot).is_none());
    raw_put(&vault, &ids[0], &old_record);
    assert!(matches!(
        vault.read_subject(&ids[0], &|_| true),
        Err(Error::Erased(_))
    ));
    // The neighbour is untouched.
    assert_eq!(
        vault.read_subject(&ids[1], &|_| true).unwrap().fields.len(),
        8
    );
}

#[test]
fn rotation_interrupted_at_a_random_batch_resumes_and_every_subject_reads() {
    let f = fixture();
    let s = schema();
    let ids = {
        let vault = open(&f);
        let items: Vec<NewSubject> = (0..500).map(|n| person(&s, n)).collect();
        let ids = vault.create_subjects(&items).unwrap();
        vault.erase_subject(&ids[3]).unwrap();
        ids
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let stop_after = 1 + seed % 9; // batches of 50: 10 in all
    {
        let vault = open(&f);
        let report = vault
            .rotate(&RotationOptions {
                batch_size: 50,
                max_batches: Some(stop_after),
            })
            .unwrap();
        assert!(!report.complete, "stopped after {stop_after} batches");
        assert_eq!(report.target_version, 2);
        // "Crash": drop without finishing.
    }
    let vault = open(&f);
    for (i, id) in ids.iter().enumerate() {
        if i != 3 {
            vault
                .read_subject(id, &|_| true)
                .unwrap_or_else(|e| panic!("subject {i}: {e}"));
        }
    }
    let report = vault
        .rotate(&RotationOptions {
            batch_size: 50,
            max_batches: None,
        })
        .unwrap();
    assert!(report.resumed && report.complete);
    assert_eq!(report.target_version, 2);
    assert_eq!(vault.stats().unwrap().kek_version, 2);
    for i in 0..vault.slots().len().unwrap() {
        let slot = vault.slots().read(i).unwrap();
        let Some(subject) = SubjectId::from_slice(&slot[..16]).filter(|s| s.as_bytes() != &[0; 16])
        else {
            continue;
        };
        let (v, _, _) = vault.unwrap_slot(&subject, &slot).unwrap();
        assert_eq!(v, 2, "slot {i} still on an old KEK");
    }
    for (i, id) in ids.iter().enumerate() {
        if i != 3 {
            assert_eq!(vault.read_subject(id, &|_| true).unwrap().fields.len(), 8);
        }
    }
    // New subjects after rotation use the new KEK and read back.
    let new = vault.create_subjects(&[person(&s, 9999)]).unwrap();
    vault.read_subject(&new[0], &|_| true).unwrap();
}

#[test]
fn backup_restores_every_subject_identically() {
    let f = fixture();
    let s = schema();
    let vault = open(&f);
    let items: Vec<NewSubject> = (0..300).map(|n| person(&s, n)).collect();
    let ids = vault.create_subjects(&items).unwrap();
    std::fs::create_dir_all(f.dir.join("policies")).unwrap();
    std::fs::write(f.dir.join("policies/schema.toml"), "# copy").unwrap();
    let mut buf = Vec::new();
    let report = vault.backup(&mut buf).unwrap();
    assert!(report.entries >= 300 * 2);
    assert_eq!(report.key_slots, 300);
    assert!(
        !buf.windows(10).any(|w| w == b"person1@ex"),
        "backup holds a plaintext email"
    );
    let target = f._tmp.path().join("restored");
    Vault::restore(&mut buf.as_slice(), &target, &f.unlock).unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("policies/schema.toml")).unwrap(),
        "# copy"
    );
    let restored = Vault::open(&target, &f.unlock, s.clone()).unwrap();
    for id in &ids {
        let a = vault.read_subject(id, &|_| true).unwrap();
        let b = restored.read_subject(id, &|_| true).unwrap();
        assert_eq!(a.fields, b.fields);
        assert_eq!(
            vault.list_gifts(id).unwrap().len(),
            restored.list_gifts(id).unwrap().len()
        );
    }
    assert_eq!(
        restored
            .lookup(IndexKind::Email, "person5@example.org")
            .unwrap(),
        vec![ids[5]]
    );

    // A damaged or truncated backup is refused and leaves no directory behind.
    let mut damaged = buf.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    let t2 = f._tmp.path().join("restored2");
    assert!(Vault::restore(&mut damaged.as_slice(), &t2, &f.unlock).is_err());
    assert!(!t2.exists());
    let truncated = &buf[..buf.len() - 20];
    assert!(Vault::restore(&mut &truncated[..], &t2, &f.unlock).is_err());
    assert!(!t2.exists());
    // A header length of 4 GiB is refused before anything is allocated for it.
    let magic_len = b"STEWARD-BACKUP-1\n".len();
    let mut absurd = buf[..magic_len].to_vec();
    absurd.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Vault::restore(&mut absurd.as_slice(), &t2, &f.unlock),
        Err(Error::Backup(m)) if m.contains("damaged")
    ));
    assert!(!t2.exists());
    // Restoring into a non-empty directory is refused.
    assert!(matches!(
        Vault::restore(&mut buf.as_slice(), &target, &f.unlock),
        Err(Error::AlreadyExists(_))
    ));
}

#[test]
fn wrong_identity_cannot_unseal_and_writes_nothing() {
    let f = fixture();
    let other = f._tmp.path().join("other-identity.txt");
    let tmp2 = f._tmp.path().join("other-data");
    Vault::init(&tmp2, &SealTo::Identity(other.clone())).unwrap();
    let before = std::fs::read_dir(&f.dir).unwrap().count();
    let err = Vault::open(&f.dir, &Unlock::Identity(other), schema())
        .err()
        .unwrap();
    assert!(matches!(err, Error::CannotUnseal(_)), "{err}");
    assert!(err.to_string().contains("cannot unseal"));
    assert_eq!(std::fs::read_dir(&f.dir).unwrap().count(), before);
}

#[test]
fn init_refuses_an_existing_directory_and_changes_nothing() {
    let f = fixture();
    let sealed = std::fs::read(f.dir.join(layout::MASTER)).unwrap();
    let err = Vault::init(&f.dir, &SealTo::Identity(f._tmp.path().join("new.txt"))).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)));
    assert_eq!(std::fs::read(f.dir.join(layout::MASTER)).unwrap(), sealed);
    assert!(!f._tmp.path().join("new.txt").exists());
}

#[test]
fn passphrase_sealed_directory_opens_with_the_passphrase_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let pass = SecretString::from("correct horse battery staple".to_string());
    Vault::init(&dir, &SealTo::Passphrase(pass.clone())).unwrap();
    let vault = Vault::open(&dir, &Unlock::Passphrase(pass), schema()).unwrap();
    let ids = vault.create_subjects(&[person(vault.schema(), 1)]).unwrap();
    vault.read_subject(&ids[0], &|_| true).unwrap();
    drop(vault);
    let wrong = SecretString::from("wrong".to_string());
    let err = Vault::open(&dir, &Unlock::Passphrase(wrong), schema())
        .err()
        .unwrap();
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
}

#[test]
fn a_second_opener_is_told_who_holds_the_directory() {
    let f = fixture();
    let vault = open(&f);
    vault
        .set_owner_note("a running Steward server at http://127.0.0.1:8080")
        .unwrap();
    let err = Vault::open(&f.dir, &f.unlock, schema()).err().unwrap();
    assert!(matches!(err, Error::InUse { .. }), "{err}");
    assert!(err.to_string().contains("http://127.0.0.1:8080"));
}

#[test]
fn reindex_adds_blocking_keys_to_subjects_stored_before_them() {
    let f = fixture();
    let vault = open(&f);
    let schema = vault.schema().clone();
    let ids = vault
        .create_subjects(&[person(&schema, 1), person(&schema, 2)])
        .unwrap();
    // Blocking keys from the fields: one per subject, naming the subject's email.
    let email = field(&schema, "email");
    let keys: crate::MatchKeys = Arc::new(move |fields: &[(FieldId, domain::Value)]| {
        fields
            .iter()
            .filter(|(f, _)| *f == email)
            .filter_map(|(_, v)| v.index_term().map(|t| format!("k:{t}")))
            .collect()
    });
    vault.set_match_keys(keys.clone());
    let rec = vault.read_subject(&ids[0], &|_| true).unwrap();
    let key = keys(&rec.fields).pop().unwrap();
    assert!(
        vault.match_candidates(&key, 10).unwrap().is_empty(),
        "stored before the keys"
    );
    assert_eq!(vault.reindex(1).unwrap(), 2);
    assert_eq!(vault.match_candidates(&key, 10).unwrap(), vec![ids[0]]);
    // Idempotent.
    assert_eq!(vault.reindex(100).unwrap(), 2);
    assert_eq!(vault.match_candidates(&key, 10).unwrap(), vec![ids[0]]);
    // A key no longer kept (the definition changed) is gone after a reindex, and an erasure
    // leaves no blocking key behind.
    let email = field(&schema, "email");
    vault.set_match_keys(Arc::new(move |fields: &[(FieldId, domain::Value)]| {
        fields
            .iter()
            .filter(|(f, _)| *f == email)
            .filter_map(|(_, v)| v.index_term().map(|t| format!("j:{t}")))
            .collect()
    }));
    let new_key = format!("j{}", &key[1..]);
    assert!(vault.match_candidates(&new_key, 10).unwrap().is_empty());
    assert_eq!(vault.reindex(1).unwrap(), 2);
    assert!(
        vault.match_candidates(&key, 10).unwrap().is_empty(),
        "old key removed"
    );
    assert_eq!(vault.match_candidates(&new_key, 10).unwrap(), vec![ids[0]]);
    vault.erase_subject(&ids[0]).unwrap();
    assert!(vault.match_candidates(&new_key, 10).unwrap().is_empty());
}

#[test]
fn a_stored_field_length_near_two_to_the_64_is_damage_not_a_panic() {
    // Found by the record_decode fuzz target: the field length's varint is 2^64 - 1.
    let bytes: &[u8] = &[
        1, 1, 3, 2, 7, 255, 255, 255, 255, 7, 96, 7, 7, 7, 7, 37, 61, 7, 165, 7, 130, 0, 0, 2, 252,
        2, 241, 255, 255, 255, 255, 255, 255, 255, 255, 1, 255, 255, 255, 7, 7, 255, 7, 7, 7, 203,
        1,
    ];
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &[7u8; 32]).unwrap(),
    );
    let subject = SubjectId::from_bytes([1u8; 16]);
    let opened = record::open(&key, bytes, &subject, &[0u8; 16], &|_| false);
    assert!(matches!(opened, Err(Error::Corrupt { .. })));
}
