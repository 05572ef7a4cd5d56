//! The audit log as `tctl audit ls` sees it: order, `since`, limits, damaged lines, rotation.

use std::os::unix::fs::PermissionsExt;

use super::*;

/// A log file holding one `n.event` line per time in `times`, then opened for appending.
fn log_with(dir: &Path, times: &[i64]) -> AuditLog {
    let path = dir.join("audit.log");
    let mut text = String::new();
    for (i, t) in times.iter().enumerate() {
        text.push_str(&format!(
            "{{\"time\":\"{}\",\"event\":\"e{i}\"}}\n",
            clock::rfc3339(*t)
        ));
    }
    std::fs::write(&path, text).unwrap();
    AuditLog::open(&path).unwrap()
}

fn names(events: &[AuditEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn events_are_listed_oldest_first_with_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&dir.path().join("audit.log")).unwrap();
    log.record("token.created", &[("token_id", "abcd1234".into())]);
    log.record("token.removed", &[("token_id", "abcd1234".into())]);
    let (events, truncated) = log.list(None, DEFAULT_LIST).unwrap();
    assert!(!truncated);
    assert_eq!(names(&events), ["token.created", "token.removed"]);
    assert_eq!(events[0]["token_id"], "abcd1234");
    let time = events[0]["time"].as_str().unwrap();
    assert!(clock::parse_rfc3339(time).is_some(), "{time}");
    let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn since_keeps_later_events_and_limit_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(dir.path(), &[100, 200, 300, 400, 500]);
    let (events, truncated) = log.list(Some(300), 10).unwrap();
    assert_eq!(names(&events), ["e2", "e3", "e4"]);
    assert!(!truncated);
    let (events, truncated) = log.list(Some(300), 2).unwrap();
    assert_eq!(names(&events), ["e3", "e4"]);
    assert!(truncated, "a third event matched");
    let (events, truncated) = log.list(None, 5).unwrap();
    assert_eq!(events.len(), 5);
    assert!(!truncated);
    assert!(log.list(Some(501), 10).unwrap().0.is_empty());
}

#[test]
fn damaged_and_oversized_lines_are_skipped_and_their_neighbours_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let ok = |name: &str| format!("{{\"time\":\"2026-01-01T00:00:00Z\",\"event\":\"{name}\"}}\n");
    let huge = format!(
        "{{\"time\":\"2026-01-01T00:00:00Z\",\"event\":\"huge\",\"x\":\"{}\"}}\n",
        "y".repeat(3 * MAX_LINE)
    );
    let text = [
        ok("first"),
        "not json\n".into(),
        huge,
        "{\"event\":\"no time\"}\n".into(),
        "\n".into(),
        ok("last"),
    ]
    .concat();
    std::fs::write(&path, text).unwrap();
    let log = AuditLog::open(&path).unwrap();
    let (events, _) = log.list(None, 10).unwrap();
    assert_eq!(names(&events), ["first", "last"]);
}

#[test]
fn lines_across_many_chunks_are_read_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let times: Vec<i64> = (0..6000).collect();
    let log = log_with(dir.path(), &times);
    assert!(std::fs::metadata(log.path()).unwrap().len() > 3 * CHUNK);
    let (events, truncated) = log.list(None, MAX_LIST).unwrap();
    assert!(!truncated);
    let expect: Vec<String> = (0..6000).map(|i| format!("e{i}")).collect();
    assert_eq!(names(&events), expect);
    // A limit past the cap is held to the cap.
    let many: Vec<i64> = vec![7; MAX_LIST + 5];
    let dir = tempfile::tempdir().unwrap();
    let (events, truncated) = log_with(dir.path(), &many).list(None, usize::MAX).unwrap();
    assert_eq!(events.len(), MAX_LIST);
    assert!(truncated);
}

#[test]
fn a_full_log_is_rotated_once_and_listing_reads_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&dir.path().join("audit.log"))
        .unwrap()
        .rotating_at(4096);
    for i in 0..300 {
        log.record("n", &[("i", i.into())]);
    }
    let rotated = log.rotated_path();
    assert_eq!(rotated, dir.path().join("audit.log.1"));
    let current = std::fs::metadata(log.path()).unwrap();
    let older = std::fs::metadata(&rotated).unwrap();
    assert!(
        current.len() < 4096 && older.len() < 4096 + 200,
        "{older:?}"
    );
    assert_eq!(current.permissions().mode() & 0o777, 0o600);
    // Only the newest events survive, with none missing in between, oldest first.
    let (events, truncated) = log.list(None, MAX_LIST).unwrap();
    assert!(!truncated);
    let idx: Vec<i64> = events.iter().map(|e| e["i"].as_i64().unwrap()).collect();
    assert_eq!(*idx.last().unwrap(), 299);
    assert!(idx[0] > 0 && idx.len() > 60, "{idx:?}");
    assert!(idx.windows(2).all(|w| w[1] == w[0] + 1), "{idx:?}");
}

#[test]
fn a_discarding_log_lists_nothing() {
    let log = AuditLog::discard();
    log.record("x", &[]);
    assert_eq!(log.list(None, 10).unwrap(), (Vec::new(), false));
}
