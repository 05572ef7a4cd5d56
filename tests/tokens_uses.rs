//! Use-limited tokens (`tctl tokens add --uses=N`) against the real processes: exactly N joins
//! pass however many race through however many proxies, a broken join uses nothing, and a late
//! join hears that the token is used up.

mod common;

use std::sync::Barrier;
use std::time::Duration;

use common::web::{self, Reply};
use common::*;
use teleport_lite::proto::RegisterRequest;

const T: Duration = Duration::from_secs(30);

/// POSTs a join to a proxy's relay, as a node's join client does.
fn join_via(proxy: &str, req: &RegisterRequest) -> Reply {
    let body = serde_json::to_vec(req).unwrap();
    let mut raw = format!(
        "POST /v1/webapi/host/credentials HTTP/1.1\r\nHost: {proxy}\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    web::raw(proxy, &raw)
}

fn uses_left(c: &Cluster, token: &str) -> serde_json::Value {
    let listed: serde_json::Value =
        serde_json::from_str(&c.tctl_ok(&["tokens", "ls", "--format=json"])).unwrap();
    let t = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["masked"].as_str().unwrap().ends_with(&token[28..]))
        .unwrap_or_else(|| panic!("the token is not listed: {listed}"))
        .clone();
    t["uses_left"].clone()
}

#[test]
fn three_uses_admit_exactly_three_of_twenty_joins_racing_through_two_proxies() {
    let c = Cluster::start();
    let mut a = c.proxy_config("proxy-a", "127.0.0.1:1", "");
    let mut b = c.proxy_config("proxy-b", "127.0.0.1:1", "");
    c.start_proxy(&mut a);
    c.start_proxy(&mut b);
    let token = c
        .tctl_ok(&["tokens", "add", "--type=node", "--uses=3", "--format=text"])
        .trim()
        .to_string();
    assert_eq!(uses_left(&c, &token), 3);

    // Joins that fail for any reason but the token use nothing.
    let (_, good) = common::wire::register_request(&token, "fine", "");
    let mut broken_csr = good.clone();
    broken_csr.csr =
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".into();
    let mut bad_name = good.clone();
    bad_name.node_name = "evil\nname".into();
    for (req, proxy) in [(broken_csr, a.addr()), (bad_name, b.addr())] {
        let r = join_via(&proxy, &req);
        assert_eq!(r.status, 400, "{}", r.text());
    }
    assert_eq!(uses_left(&c, &token), 3, "a broken join used the token");

    // Twenty joins at once, alternating between the proxies, each with its own key.
    let proxies = [a.addr(), b.addr()];
    let start = Barrier::new(20);
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (proxy, start, token) = (&proxies[i % 2], &start, &token);
                s.spawn(move || {
                    let (_, req) = common::wire::register_request(token, &format!("racer-{i}"), "");
                    start.wait();
                    join_via(proxy, &req)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let joined: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 403).collect();
    assert_eq!(joined.len(), 3, "{replies:?}");
    assert_eq!(refused.len(), 17, "{replies:?}");
    for r in joined {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["tls"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    }
    for r in refused {
        assert!(
            r.text().contains("has been used 3 times, its limit"),
            "{}",
            r.text()
        );
    }

    // The record stays, at zero, until it expires; the listing says so.
    assert_eq!(uses_left(&c, &token), 0);
    let ls = c.tctl_ok(&["tokens", "ls"]);
    let header = ls.lines().next().unwrap();
    let col = header.find("Uses Left").expect("a Uses Left column");
    let row = ls.lines().find(|l| l.contains(&token[28..])).unwrap();
    assert_eq!(row[col..].split_whitespace().next(), Some("0"), "{ls}");
}

#[test]
fn a_late_node_hears_the_token_is_used_up_and_bad_uses_are_refused() {
    let c = Cluster::start();
    let pin = c.pin();
    let token = c
        .tctl_ok(&["tokens", "add", "--type=node", "--uses=1", "--format=text"])
        .trim()
        .to_string();
    let mut first = Node::new("first");
    first.start(&c, &token, &pin);
    c.wait_node("first", T);
    let mut late = Node::new("late");
    let args = late.start_args(&c, &token, &pin);
    let (status, log) = late.run_expect_exit(&args);
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("the join token has been used 1 time, its limit"),
        "{log}"
    );
    assert!(late.data_files().is_empty(), "{:?}", late.data_files());
    assert!(!c.has_node("late"));

    // Unlimited tokens list as such; out-of-range counts never reach auth.
    let unlimited = c.token("node", "10m");
    assert_eq!(uses_left(&c, &unlimited), serde_json::Value::Null);
    let ls = c.tctl_ok(&["tokens", "ls"]);
    let row = ls.lines().find(|l| l.contains(&unlimited[28..])).unwrap();
    assert!(row.contains("unlimited"), "{ls}");
    for bad in ["--uses=0", "--uses=10001"] {
        let out = c.tctl(&["tokens", "add", "--type=node", bad]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("give 1 to 10000 joins"),
            "{}",
            text(&out)
        );
    }
    let out = c.tctl(&["tokens", "add", "--type=bot,node", "--uses=2"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("bot tokens are single-use: leave out --uses"),
        "{}",
        text(&out)
    );
}
