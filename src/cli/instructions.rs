//! What `tctl tokens add` tells the operator to run on a new host.

use std::time::Duration;

use crate::clock;
use crate::proto::TokenCreated;

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
        s.push_str(&format!(
            "\nOr install the agent and join with one line on the new host:\n\n> curl -fsSL \
             https://{}/scripts/{}/install-node.sh | sudo bash\n",
            c.proxy_addr, token
        ));
    }
    s
}
