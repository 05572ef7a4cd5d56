//! What `tctl tokens add` tells the operator to run on a new host.

use std::time::Duration;

use crate::clock;
use crate::pki::webpin;
use crate::proto::{TokenCreated, WebTrust};

/// The text `tctl tokens add` prints, as in the seed document.
pub fn join_instructions(c: &TokenCreated) -> String {
    let ttl = clock::describe_ttl(Duration::from_secs(c.ttl_secs));
    let roles: Vec<String> = c.roles.iter().map(|r| r.to_ascii_lowercase()).collect();
    // The one place a token is shown in clear: to the admin who created it.
    let token = c.token.expose();
    let mut s = format!(
        "The invite token: {}\nThis token will expire in {ttl}.\n\nRun this on the new node to \
         join the cluster:\n\n> teleport start \\\n   --roles={} \\\n   --token={} \\\n",
        token,
        roles.join(","),
        token
    );
    for pin in &c.ca_pins {
        s.push_str(&format!("   --ca-pin={pin} \\\n"));
    }
    s.push_str(&format!(
        "   --auth-server={}\n\nPlease note:\n\n  - This invitation token will expire in {ttl}\n  \
         - {} must be reachable from the new node\n",
        c.auth_addr, c.auth_addr
    ));
    if !c.proxy_addr.is_empty() && roles.iter().any(|r| r == "node") {
        s.push_str("\nOr install the agent and join with one line on the new host:\n\n");
        s.push_str(&install_line(&c.proxy_addr, token, &c.proxy_web));
    }
    s
}

/// The one-line install: `{ curl ... || echo 'exit 1'; } | sudo bash`. The script goes to
/// bash on stdin, never in an argument (sudo logs its arguments and `ps` shows them to every
/// user, and the script holds the token). A failed download still makes the whole line exit
/// non-zero, in any POSIX shell: bash then reads `exit 1` (after a partial script, a syntax
/// error; everything runs inside `main`, so nothing of it ran). Unless every live proxy serves a
/// publicly trusted certificate, curl pins their web keys; `-k` only lifts the CA check that
/// the pin replaces (curl still refuses any other key).
pub fn install_line(proxy_addr: &str, token: &str, web: &WebTrust) -> String {
    let url = format!("'https://{proxy_addr}/scripts/{token}/install-node.sh'");
    if web.public || web.pins.is_empty() {
        return format!("> {{ curl -fsSL {url} || echo 'exit 1'; }} | sudo bash\n");
    }
    format!(
        "# -k: the proxies serve cluster-issued certificates; --pinnedpubkey accepts only their \
         keys\n> {{ curl -fsSL -k --pinnedpubkey '{}' {url} || echo 'exit 1'; }} | sudo bash\n",
        webpin::curl_arg(&web.pins)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    #[test]
    fn the_line_pins_unless_every_proxy_is_publicly_trusted() {
        let web = |public| WebTrust {
            pins: vec![PIN.into()],
            public,
        };
        let pinned = install_line("p:3080", "tok", &web(false));
        assert!(
            pinned.contains(&format!("-k --pinnedpubkey '{PIN}' 'https://p:3080/")),
            "{pinned}"
        );
        assert!(pinned.starts_with("# -k"), "{pinned}");
        let plain = install_line("p:443", "tok", &web(true));
        assert_eq!(
            plain,
            "> { curl -fsSL 'https://p:443/scripts/tok/install-node.sh' || echo 'exit 1'; } | \
             sudo bash\n"
        );
    }
}
