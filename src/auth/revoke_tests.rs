//! Unit tests of locks and removals: enforcement, persistence, and changes made by another
//! auth server on the same store.

use super::*;
use crate::auth::backend::gated::{Gated, On};
use crate::auth::backend::sqlite::SqliteBackend;

fn lock(target: LockTarget, expires: Option<i64>) -> LockInfo {
    LockInfo {
        target,
        message: "stolen laptop".into(),
        created: 0,
        expires,
    }
}

#[test]
fn a_lock_closes_live_streams_wakes_links_and_survives_a_restart() {
    let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::in_memory().unwrap());
    let rev = Revocations::load(backend.clone(), 0).unwrap();
    let conn = rev.register("h1");
    let other = rev.register("h2");
    let link = rev.subscribe();
    let target = LockTarget::ServerId("h1".into());
    rev.add_lock(lock(target.clone(), Some(100))).unwrap();
    assert!(conn.killed.is_fired());
    assert!(!other.killed.is_fired());
    assert!(link.changed.try_recv().is_ok());
    let msg = rev.denial(&target, 99).unwrap();
    assert!(msg.contains("stolen laptop") && msg.contains("h1"), "{msg}");
    assert!(rev.denial(&target, 100).is_none(), "expired");
    let again = Revocations::load(backend, 50).unwrap();
    assert!(again.denial(&target, 50).is_some());
    assert!(again.remove_lock(&target, 50).unwrap());
    assert!(again.denial(&target, 50).is_none());
}

#[test]
fn a_removed_host_stays_denied_and_is_told_to_join_again() {
    let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::in_memory().unwrap());
    let rev = Revocations::load(backend.clone(), 0).unwrap();
    rev.remove_host("h1", "web-1", 10).unwrap();
    let again = Revocations::load(backend, i64::MAX - 1).unwrap();
    let msg = again
        .denial(&LockTarget::ServerId("h1".into()), i64::MAX - 1)
        .unwrap();
    assert!(msg.contains("join again"), "{msg}");
    assert!(again.is_removed("h1"));
    assert_eq!(again.denials(0).len(), 1);
}

#[test]
fn a_change_made_by_another_server_is_applied_by_sync() {
    let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::in_memory().unwrap());
    let here = Revocations::load(backend.clone(), 0).unwrap();
    let there = Revocations::load(backend, 0).unwrap();
    let conn = here.register("h1");
    let removed = here.register("h2");
    let link = here.subscribe();
    let target = LockTarget::ServerId("h1".into());
    there.add_lock(lock(target.clone(), None)).unwrap();
    there.remove_host("h2", "web-2", 5).unwrap();
    assert!(here.denial(&target, 1).is_none(), "not yet synced");
    let mut denied = here.sync(crate::auth::backend::TOPIC_ALL, 1).unwrap();
    denied.sort();
    assert_eq!(denied, vec!["h1".to_string(), "h2".to_string()]);
    assert!(conn.killed.is_fired() && removed.killed.is_fired());
    assert!(link.changed.try_recv().is_ok());
    assert!(here.denial(&target, 1).is_some() && here.is_removed("h2"));
    // Nothing new: nothing closed, nobody woken.
    assert!(here
        .sync(crate::auth::backend::TOPIC_LOCKS, 1)
        .unwrap()
        .is_empty());
    assert!(link.changed.try_recv().is_err());
    there.remove_lock(&target, 1).unwrap();
    here.sync(crate::auth::backend::TOPIC_LOCKS, 1).unwrap();
    assert!(here.denial(&target, 1).is_none());
    assert!(link.changed.try_recv().is_ok());
}

#[test]
fn a_sync_that_read_before_a_local_lock_does_not_erase_it() {
    use std::sync::Barrier;
    let read = Arc::new(Barrier::new(2));
    let go = Arc::new(Barrier::new(2));
    let backend = Arc::new(Gated::new(On::List(LOCKS)));
    let rev = Revocations::load(backend.clone(), 0).unwrap();
    *backend.gate.lock().unwrap() = Some((read.clone(), go.clone()));
    let watcher = {
        let rev = rev.clone();
        std::thread::spawn(move || rev.sync(crate::auth::backend::TOPIC_LOCKS, 0).unwrap())
    };
    read.wait();
    let target = LockTarget::ServerId("h1".into());
    rev.add_lock(lock(target.clone(), None)).unwrap();
    assert!(
        rev.denial(&target, 1).is_some(),
        "locked right after tctl lock"
    );
    go.wait();
    watcher.join().unwrap();
    assert!(
        rev.denial(&target, 1).is_some(),
        "the sync's older read erased the lock"
    );
}

#[test]
fn a_sync_that_read_before_a_local_unlock_does_not_bring_the_lock_back_for_good() {
    use std::sync::Barrier;
    let read = Arc::new(Barrier::new(2));
    let go = Arc::new(Barrier::new(2));
    let backend = Arc::new(Gated::new(On::List(LOCKS)));
    let rev = Revocations::load(backend.clone(), 0).unwrap();
    let target = LockTarget::ServerId("h1".into());
    rev.add_lock(lock(target.clone(), None)).unwrap();
    *backend.gate.lock().unwrap() = Some((read.clone(), go.clone()));
    let watcher = {
        let rev = rev.clone();
        std::thread::spawn(move || rev.sync(crate::auth::backend::TOPIC_LOCKS, 0).unwrap())
    };
    read.wait();
    assert!(rev.remove_lock(&target, 0).unwrap());
    go.wait();
    watcher.join().unwrap();
    assert!(
        rev.denial(&target, 1).is_none(),
        "the older read was applied"
    );
}
