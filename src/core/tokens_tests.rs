//! Token rules: issue, expiry, roles, use limits, masking and static tokens.

use super::*;

fn node_token(now: i64) -> (Token, TokenRecord) {
    issue(&[TokenRole::Node], 300, BTreeMap::new(), None, now).unwrap()
}

#[test]
fn ttl_is_bounded() {
    assert_eq!(
        issue(&[TokenRole::Node], 0, BTreeMap::new(), None, 0).unwrap_err(),
        BadToken::Ttl
    );
    let too_long = MAX_TTL_SECS + 1;
    assert!(issue(&[TokenRole::Node], too_long, BTreeMap::new(), None, 0).is_err());
    assert!(issue(&[TokenRole::Node], MAX_TTL_SECS, BTreeMap::new(), None, 0).is_ok());
}

#[test]
fn a_token_expires_at_its_deadline_and_is_kept_an_hour_longer() {
    let (t, r) = node_token(1000);
    assert_eq!(r.expires, 1300);
    assert_eq!(r.keep_until(), 1300 + EXPIRED_RETENTION_SECS);
    assert!(r.judge(&t.hash_hex(), TokenRole::Node, 1299).is_ok());
    let err = r.judge(&t.hash_hex(), TokenRole::Node, 1300).unwrap_err();
    assert_eq!(err.reason, "expired_token");
    assert!(err.message.contains("expired at"), "{}", err.message);
}

#[test]
fn wrong_role_says_what_the_token_allows() {
    let (t, r) = node_token(0);
    let err = r.judge(&t.hash_hex(), TokenRole::Proxy, 1).unwrap_err();
    assert_eq!(err.reason, "wrong_role");
    assert!(
        err.message
            .contains("does not allow joining as Proxy (it allows Node)"),
        "{}",
        err.message
    );
    assert!(err.message.contains("--type=proxy"), "{}", err.message);
}

#[test]
fn another_token_is_unknown() {
    let (_, r) = node_token(0);
    let other = Token::new("not-the-token").hash_hex();
    assert_eq!(
        r.judge(&other, TokenRole::Node, 1).unwrap_err().reason,
        "invalid_token"
    );
}

#[test]
fn the_stored_and_listed_forms_hold_no_secret() {
    let (t, r) = node_token(0);
    let stored = serde_json::to_string(&r).unwrap();
    let info = r.info();
    for shown in [stored, format!("{info:?}")] {
        assert!(!shown.contains(t.expose()), "{shown}");
        assert!(!shown.contains(&t.expose()[..28]), "{shown}");
    }
    assert!(info.masked.ends_with(&t.last4()));
    assert_eq!(info.roles, vec!["Node"]);
    assert_eq!(r.uses_left(), None);
    assert!(
        r.after_one_use().is_none(),
        "an unlimited token counts nothing"
    );
}

#[test]
fn uses_are_bounded_and_bot_tokens_are_single_use() {
    let add = |roles: &[TokenRole], uses| issue(roles, 60, BTreeMap::new(), uses, 0);
    for bad in [0, MAX_USES + 1] {
        let e = add(&[TokenRole::Node], Some(bad)).unwrap_err();
        assert_eq!(e, BadToken::Uses);
        assert!(e.to_string().contains("between 1 and 10000"), "{e}");
    }
    assert!(add(&[TokenRole::Node], Some(MAX_USES)).is_ok());
    let (_, bot) = add(&[TokenRole::Bot], None).unwrap();
    assert_eq!(bot.uses_left(), Some(1));
    assert_eq!(bot.info().uses_left, Some(1));
    assert!(add(&[TokenRole::Bot, TokenRole::Node], Some(1)).is_ok());
    let e = add(&[TokenRole::Bot], Some(2)).unwrap_err();
    assert_eq!(e.to_string(), "bot tokens are single-use: leave out --uses");
}

#[test]
fn a_limited_token_counts_down_and_then_says_it_is_used_up() {
    let (t, mut r) = issue(&[TokenRole::Node], 60, BTreeMap::new(), Some(3), 0).unwrap();
    let h = t.hash_hex();
    for left in [2, 1, 0] {
        assert!(r.judge(&h, TokenRole::Node, 1).is_ok());
        r = r.after_one_use().unwrap();
        assert_eq!(r.info().uses_left, Some(left));
    }
    let err = r.judge(&h, TokenRole::Node, 1).unwrap_err();
    assert_eq!(err.reason, "used_up");
    assert_eq!(
        err.message,
        "the token is not valid: the join token has been used 3 times, its limit: create a \
         new one with \"tctl tokens add --type=node\""
    );
    // Expiry still wins: a used-up token that expired says so.
    assert_eq!(
        r.judge(&h, TokenRole::Node, 60).unwrap_err().reason,
        "expired_token"
    );
}

#[test]
fn records_from_before_use_limits_read_as_unlimited_and_bots_as_single_use() {
    let (_, r) = node_token(0);
    let mut old = serde_json::to_value(&r).unwrap();
    old.as_object_mut().unwrap().remove("uses_left");
    let read: TokenRecord = serde_json::from_value(old.clone()).unwrap();
    assert_eq!(read.uses_left(), None);
    old["roles"] = serde_json::json!(["bot"]);
    let bot: TokenRecord = serde_json::from_value(old).unwrap();
    assert_eq!(bot.uses_left(), Some(1));
    let used = bot.after_one_use().unwrap();
    let err = used
        .judge(&used.hash.clone(), TokenRole::Bot, 1)
        .unwrap_err();
    assert!(
        err.message.contains("used 1 time, its limit"),
        "{}",
        err.message
    );
}

#[test]
fn static_tokens_match_by_hash_and_check_roles() {
    let s = StaticTokens::new(vec![(
        Token::new("static-secret"),
        vec![TokenRole::Proxy, TokenRole::Node],
    )]);
    let h = Token::new("static-secret").hash_hex();
    assert!(s.judge(&h, TokenRole::Proxy).unwrap().is_ok());
    assert_eq!(
        s.judge(&h, TokenRole::Db).unwrap().unwrap_err().reason,
        "wrong_role"
    );
    assert!(s.judge("other", TokenRole::Node).is_none());
    assert!(s.names("static-secret"));
    assert!(s.names(public_id(&h)));
    assert!(!s.names("something-else"));
    let infos: Vec<TokenInfo> = s.infos().collect();
    assert!(infos[0].is_static && infos[0].expires.is_none());
    assert!(!infos[0].masked.contains("static-secret"));
}

#[test]
fn role_names_parse_both_spellings() {
    assert_eq!(TokenRole::parse("node").unwrap(), TokenRole::Node);
    assert_eq!(TokenRole::parse("Node").unwrap(), TokenRole::Node);
    assert!(TokenRole::parse("nodes")
        .unwrap_err()
        .contains("windowsdesktop"));
}
