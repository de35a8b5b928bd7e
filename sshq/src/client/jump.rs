//! ProxyJump (-J): reaching the destination through jump hosts.
//!
//! Each hop is an SSH connection of its own, opened through the previous
//! one; the jump hosts relay bytes they cannot read, and every hop's host
//! key is checked as a direct connection's would be. The streams through a
//! hop are `super::route`'s: a QUIC hop needs a jump host that relays UDP
//! (sshqd); through any other, Transport=auto settles on TCP and
//! Transport=quic fails saying why.
//!
//! As in OpenSSH, options from the command line apply to the destination
//! only, and ssh_config applies to every hop.

use sshq_core::error::ConnectError;

use super::auth::Prompts;
use super::cli::{Cli, Destination};
use super::connect;
use super::route::{AnyConnection, Route};
use super::Plan;

/// The jump hosts' connections, kept open while the destination's is used.
pub struct JumpChain {
    _hops: Vec<AnyConnection>,
}

/// The jump hosts `plan` names, resolved with ssh_config (and -F) only.
pub fn hop_plans(cli: &Cli, plan: &Plan) -> Result<Vec<Plan>, super::error::ClientError> {
    let Some(spec) = plan.options.proxy_jump.as_deref() else {
        return Ok(Vec::new());
    };
    if spec == "none" {
        return Ok(Vec::new());
    }
    let hops = Destination::parse_jump_list(spec)?;
    hops.iter()
        .map(|hop| super::resolve_hop(cli, hop, plan.quiet))
        .collect()
}

/// Connects through `hops` in order; returns the connection the destination
/// must be reached through (none without hops) and the chain to keep.
pub async fn connect_hops(hops: &[Plan], prompts: Prompts) -> Result<JumpChain, ConnectError> {
    let mut chain: Vec<AnyConnection> = Vec::new();
    for hop in hops {
        let route = match chain.last() {
            Some(previous) => Route::Via(previous),
            None => Route::Direct,
        };
        tracing::debug!(
            "ProxyJump: connecting to jump host {} port {}",
            hop.hostname,
            hop.port
        );
        let conn = connect::connect(hop, route, prompts).await?;
        let conn = connect::logged_in(conn, hop).await?;
        chain.push(conn);
    }
    Ok(JumpChain { _hops: chain })
}

impl JumpChain {
    /// The route to the destination: through the last hop, if any.
    pub fn route(&self) -> Route<'_> {
        match self._hops.last() {
            Some(last) => Route::Via(last),
            None => Route::Direct,
        }
    }
}
