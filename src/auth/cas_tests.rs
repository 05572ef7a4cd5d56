//! Unit tests of the CA set: a rotation across restarts, and two auth servers moving one
//! rotation on.

use super::*;
use crate::auth::backend::gated::{Gated, On};
use crate::auth::backend::sqlite::SqliteBackend;

#[test]
fn a_rotation_survives_a_restart_and_ends_with_only_the_new_ca() {
    let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::in_memory().unwrap());
    let set = CaSet::load_or_create(backend.clone(), "c", 0).unwrap();
    let old = set.get().current.cert_pem.clone();
    set.apply(|r| r.start_auto(30, 100).map(Some)).unwrap();
    let view = set.get();
    assert_eq!(view.pins().len(), 2);
    assert_eq!(
        view.signer("Node").cert_pem,
        old,
        "init signs with the old CA"
    );
    let again = CaSet::load_or_create(backend.clone(), "c", 0).unwrap();
    assert_eq!(again.get().rotation.phase, Phase::Init);
    assert_eq!(
        again.get().next.as_ref().unwrap().cert_pem,
        view.next.as_ref().unwrap().cert_pem
    );
    set.advance(110).unwrap();
    let view = set.get();
    assert_ne!(view.signer("Node").cert_pem, old);
    assert_eq!(
        view.signer("Proxy").cert_pem,
        old,
        "servers keep the old CA"
    );
    assert_eq!(view.trust_info(60).client_signer, 1);
    set.advance(120).unwrap();
    let (phase, view) = set.advance(130).unwrap().unwrap();
    assert_eq!(phase, Phase::Standby);
    assert_eq!(view.trusted().len(), 1);
    assert_ne!(view.current.cert_pem, old);
    assert!(CaSet::load_or_create(backend, "other", 0).is_err());
}

#[test]
fn of_two_servers_moving_one_rotation_on_only_one_does_and_the_other_adopts_it() {
    let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::in_memory().unwrap());
    let a = CaSet::load_or_create(backend.clone(), "c", 0).unwrap();
    let b = CaSet::load_or_create(backend, "c", 0).unwrap();
    a.apply(|r| r.start_auto(30, 100).map(Some)).unwrap();
    assert!(b.sync(100).unwrap().is_some(), "b adopts the new rotation");
    assert!(b.sync(100).unwrap().is_none(), "nothing new");
    assert!(a.advance(110).unwrap().is_some());
    // b read the record before a's advance: its own write is refused, nothing changes.
    assert!(b.advance(110).unwrap().is_none());
    assert_eq!(b.get().rotation.phase, Phase::Init);
    let adopted = b.sync(110).unwrap().unwrap();
    assert_eq!(adopted.rotation.phase, a.get().rotation.phase);
    assert_eq!(
        adopted.next.as_ref().unwrap().cert_pem,
        a.get().next.as_ref().unwrap().cert_pem
    );
}

#[test]
fn a_sync_that_read_before_a_local_step_does_not_bring_the_older_cas_back() {
    use std::sync::Barrier;
    let read = Arc::new(Barrier::new(2));
    let go = Arc::new(Barrier::new(2));
    let backend = Arc::new(Gated::new(On::Get(CA_KEY)));
    let set = Arc::new(CaSet::load_or_create(backend.clone(), "c", 0).unwrap());
    *backend.gate.lock().unwrap() = Some((read.clone(), go.clone()));
    let watcher = {
        let set = set.clone();
        std::thread::spawn(move || set.sync(0).unwrap().is_some())
    };
    read.wait();
    set.apply(|r| r.start_auto(30, 100).map(Some)).unwrap();
    assert_eq!(set.get().rotation.phase, Phase::Init);
    go.wait();
    let adopted = watcher.join().unwrap();
    assert!(!adopted, "the older record was adopted");
    assert_eq!(set.get().rotation.phase, Phase::Init);
    assert_eq!(set.get().pins().len(), 2);
}

#[test]
fn a_record_written_before_revisions_is_read_and_written_on() {
    let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::in_memory().unwrap());
    let a = CaSet::load_or_create(backend.clone(), "c", 0).unwrap();
    let b = CaSet::load_or_create(backend.clone(), "c", 0).unwrap();
    // Rewrite the record as an older version stored it: no revision field.
    let item = backend.get(CA_KEY, 0).unwrap().unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&item.value).unwrap();
    assert_eq!(json["revision"], 1);
    json.as_object_mut().unwrap().remove("revision");
    let old = Item {
        value: serde_json::to_vec(&json).unwrap(),
        ..item.clone()
    };
    assert!(backend.compare_and_swap(&item, &old, 0).unwrap());
    assert!(
        b.sync(0).unwrap().is_some(),
        "an unversioned record is adopted"
    );
    b.apply(|r| r.start_auto(30, 100).map(Some)).unwrap();
    assert_eq!(b.get().revision, 1);
    let adopted = a.sync(100).unwrap().unwrap();
    assert_eq!(adopted.rotation.phase, Phase::Init);
    assert!(a.sync(100).unwrap().is_none(), "nothing new");
}

#[test]
fn of_two_syncs_the_one_that_read_the_older_record_does_not_apply_it_last() {
    use std::sync::Barrier;
    let read = Arc::new(Barrier::new(2));
    let go = Arc::new(Barrier::new(2));
    let backend = Arc::new(Gated::new(On::Get(CA_KEY)));
    let set = Arc::new(CaSet::load_or_create(backend.clone(), "c", 0).unwrap());
    let other = CaSet::load_or_create(backend.clone(), "c", 0).unwrap();
    other.apply(|r| r.start_auto(30, 100).map(Some)).unwrap();
    *backend.gate.lock().unwrap() = Some((read.clone(), go.clone()));
    let slow = {
        let set = set.clone();
        std::thread::spawn(move || set.sync(100).unwrap().is_some())
    };
    read.wait();
    // Another pass adopts the same record, and a local step moves the rotation on from it.
    assert!(set.sync(100).unwrap().is_some());
    let (phase, _) = set.advance(110).unwrap().unwrap();
    assert_ne!(phase, Phase::Init);
    go.wait();
    assert!(!slow.join().unwrap(), "the older record was adopted");
    assert_eq!(set.get().rotation.phase, phase);
}
