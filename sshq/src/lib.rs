//! The sshq client and the sshqd server, written once above the transport trait.

pub mod client;
pub mod config_syntax;
pub mod forward;
pub mod fs_identity;
#[doc(hidden)]
pub mod fuzzing;
pub mod io;
pub mod reattach;
pub mod server;

/// The Linux TCP controller for a `CongestionControl` value: the option
/// names quinn's controllers, and the same name applies to sshq's TCP
/// sockets (NewReno is the kernel's `reno`).
pub(crate) fn tcp_congestion(
    controller: sshq_quic::tls::CongestionControl,
) -> sshq_tcp::TcpCongestion {
    use sshq_quic::tls::CongestionControl;
    match controller {
        CongestionControl::Cubic => sshq_tcp::TcpCongestion::Cubic,
        CongestionControl::Bbr => sshq_tcp::TcpCongestion::Bbr,
        CongestionControl::NewReno => sshq_tcp::TcpCongestion::Reno,
    }
}
