//! Token types (`--type=node,proxy`, `bot` for single use): how they are spelled on the
//! command line and in certificates, and which ones teleport-lite can join with. No I/O.

/// The token types of the seed document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TokenRole {
    App,
    Auth,
    Bot,
    Db,
    Discovery,
    Kube,
    Node,
    Proxy,
    WindowsDesktop,
}

const ALL_ROLES: [TokenRole; 9] = [
    TokenRole::App,
    TokenRole::Auth,
    TokenRole::Bot,
    TokenRole::Db,
    TokenRole::Discovery,
    TokenRole::Kube,
    TokenRole::Node,
    TokenRole::Proxy,
    TokenRole::WindowsDesktop,
];

impl TokenRole {
    /// Accepts the `--type` spelling ("node") and the certificate spelling ("Node").
    pub fn parse(s: &str) -> std::result::Result<TokenRole, String> {
        let lower = s.trim().to_ascii_lowercase();
        ALL_ROLES
            .into_iter()
            .find(|r| r.flag() == lower || r.name().to_ascii_lowercase() == lower)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL_ROLES.iter().map(|r| r.flag()).collect();
                format!("unknown token type {s:?}: use one of {}", names.join(", "))
            })
    }

    /// As typed in `--type`.
    pub fn flag(self) -> &'static str {
        match self {
            TokenRole::App => "app",
            TokenRole::Auth => "auth",
            TokenRole::Bot => "bot",
            TokenRole::Db => "db",
            TokenRole::Discovery => "discovery",
            TokenRole::Kube => "kube",
            TokenRole::Node => "node",
            TokenRole::Proxy => "proxy",
            TokenRole::WindowsDesktop => "windowsdesktop",
        }
    }

    /// As shown by `tctl tokens ls` and written in certificates.
    pub fn name(self) -> &'static str {
        match self {
            TokenRole::App => "App",
            TokenRole::Auth => "Auth",
            TokenRole::Bot => "Bot",
            TokenRole::Db => "Db",
            TokenRole::Discovery => "Discovery",
            TokenRole::Kube => "Kube",
            TokenRole::Node => "Node",
            TokenRole::Proxy => "Proxy",
            TokenRole::WindowsDesktop => "WindowsDesktop",
        }
    }
}

impl TokenRole {
    /// Whether this binary can use a token of this type: nodes and proxies join with it, and
    /// `bot` (as in Teleport) makes a token single-use (`bot,node`).
    pub fn supported(self) -> bool {
        matches!(self, TokenRole::Node | TokenRole::Proxy | TokenRole::Bot)
    }
}

/// `parse_roles`, refusing types nothing in teleport-lite can join with (app, db, kube ...):
/// such a token would print a `teleport start` line that then fails.
pub fn parse_supported_roles(list: &[String]) -> std::result::Result<Vec<TokenRole>, String> {
    let roles = parse_roles(list)?;
    let unsupported: Vec<&str> = roles
        .iter()
        .filter(|r| !r.supported())
        .map(|r| r.flag())
        .collect();
    if !unsupported.is_empty() {
        return Err(format!(
            "token type {} is not supported by teleport-lite, which runs nodes and proxies only: \
             use --type=node or --type=proxy (add bot, as in --type=bot,node, for a single-use \
             token)",
            unsupported.join(", ")
        ));
    }
    Ok(roles)
}

pub fn parse_roles(list: &[String]) -> std::result::Result<Vec<TokenRole>, String> {
    let mut roles = list
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.trim().is_empty())
        .map(TokenRole::parse)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err("no token type given: pass --type=node (or another type)".into());
    }
    Ok(roles)
}
