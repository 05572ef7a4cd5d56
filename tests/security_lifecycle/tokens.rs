//! Use-limited tokens raced from every side, and token values in logs.

use super::*;

#[test]
fn a_uses_token_raced_directly_and_through_a_proxy_admits_exactly_its_uses_and_no_log_holds_it() {
    // Catches: a use count read and written without compare-and-swap (more than 3 joins);
    // a broken join that uses a use; a token value in any log line (auth and proxy at DEBUG),
    // the audit log or the database, however it was presented.
    let web = free_port();
    let c = web_cluster(web);
    let proxy = format!("127.0.0.1:{web}");
    let token = c
        .tctl_ok(&["tokens", "add", "--type=node", "--uses=3", "--format=text"])
        .trim()
        .to_string();
    let mut broken = raw::register(&token, "broken", "");
    broken.csr =
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".into();
    let r = wire::ask_auth(&c.addr(), &Request::Register(broken), None);
    assert!(matches!(r, Response::Error { .. }), "{r:?}");
    // The token where it does not belong: on a node's stream, and in an install script path.
    let node = raw::join(&c, "Node", "chatty");
    block(async {
        let mut s = raw::stream(&c.addr(), &node).await;
        s.send(&Request::Register(raw::register(&token, "chatty", "")))
            .await
            .unwrap();
        let _ = raw::outcome(&mut s, T).await;
    });
    let script = web::get(&proxy, &format!("/scripts/{token}/install-node.sh"));
    assert_eq!(script.status, 200, "{}", script.text());
    let barrier = std::sync::Barrier::new(20);
    let joined: usize = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (barrier, token, addr, proxy) = (&barrier, &token, c.addr(), &proxy);
                sc.spawn(move || {
                    let req = raw::register(token, &format!("racer-{i}"), "");
                    barrier.wait();
                    if i % 2 == 0 {
                        let r = wire::ask_auth(&addr, &Request::Register(req), None);
                        matches!(r, Response::Registered { .. })
                    } else {
                        join_via(proxy, &req).status == 200
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum()
    });
    assert_eq!(
        joined, 3,
        "a token made with --uses=3 admitted {joined} of 20 racing joins"
    );
    c.tctl_ok(&["tokens", "rm", &token]);
    let leaks: Vec<String> = all_bytes_under(c.path())
        .into_iter()
        .filter(|(_, bytes)| contains(bytes, token.as_bytes()))
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(leaks.is_empty(), "the token value is in {leaks:?}");
}

/// Auth and a proxy in one process, logging at DEBUG.
fn web_cluster(web: u16) -> Cluster {
    web::debug_cluster_with_proxy(web)
}

/// POSTs a join to a proxy's relay, as a node's join client does.
fn join_via(proxy: &str, req: &teleport_lite::proto::RegisterRequest) -> web::Reply {
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
