//! Options on the TCP sockets that carry SSH: no Nagle delay, little unsent
//! data in the kernel (see `pacing.rs`), and the congestion controller.

use std::io;

use crate::pacing::NOTSENT_LOWAT;

/// Sets TCP_NODELAY and `TCP_NOTSENT_LOWAT` ([`NOTSENT_LOWAT`]) on a
/// socket that will carry SSH.
pub fn tune_socket(stream: &tokio::net::TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    set_notsent_lowat(stream, NOTSENT_LOWAT)
}

/// `TCPKeepAlive`: SO_KEEPALIVE on or off, as ssh and sshd set it (on by
/// default in both). The kernel then probes an idle connection (after two
/// hours, by its defaults) and ends it when the peer is gone, so that a
/// vanished client's session is not kept forever.
pub fn set_keepalive(stream: &tokio::net::TcpStream, on: bool) -> io::Result<()> {
    socket2::SockRef::from(stream).set_keepalive(on)
}

/// Whether SO_KEEPALIVE is on.
pub fn keepalive(stream: &tokio::net::TcpStream) -> io::Result<bool> {
    socket2::SockRef::from(stream).keepalive()
}

/// A congestion controller for one socket (`TCP_CONGESTION`), so that
/// sshq's `CongestionControl` applies to TCP as it does to QUIC, without a
/// route or system-wide setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpCongestion {
    Cubic,
    Bbr,
    Reno,
}

impl TcpCongestion {
    /// The kernel's name for the controller (`tcp_available_congestion_control`).
    pub fn kernel_name(self) -> &'static str {
        match self {
            TcpCongestion::Cubic => "cubic",
            TcpCongestion::Bbr => "bbr",
            TcpCongestion::Reno => "reno",
        }
    }
}

/// Why a congestion controller could not be set on a socket.
#[derive(Debug, thiserror::Error)]
pub enum CongestionError {
    #[error(
        "TCP congestion control \"{0}\" is not available in this kernel (load it, e.g. `modprobe tcp_{0}`; \
         /proc/sys/net/ipv4/tcp_available_congestion_control lists what is)"
    )]
    NotAvailable(&'static str),
    #[error(
        "TCP congestion control \"{0}\" is not allowed for unprivileged programs (add it to \
         /proc/sys/net/ipv4/tcp_allowed_congestion_control)"
    )]
    NotAllowed(&'static str),
    #[error("TCP congestion control \"{name}\": {source}")]
    Other {
        name: &'static str,
        source: io::Error,
    },
}

/// Sets the socket's congestion controller.
pub fn set_congestion_control(
    stream: &tokio::net::TcpStream,
    controller: TcpCongestion,
) -> Result<(), CongestionError> {
    let name = controller.kernel_name();
    set_congestion_by_name(stream, name).map_err(|source| match source.raw_os_error() {
        Some(libc::ENOENT) => CongestionError::NotAvailable(name),
        Some(libc::EPERM) => CongestionError::NotAllowed(name),
        _ => CongestionError::Other { name, source },
    })
}

/// The socket's congestion controller, as the kernel names it.
pub fn congestion_control(stream: &tokio::net::TcpStream) -> io::Result<String> {
    get_congestion_name(stream)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_notsent_lowat(stream: &tokio::net::TcpStream, bytes: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    setsockopt_tcp(
        stream,
        libc::TCP_NOTSENT_LOWAT,
        (&value as *const libc::c_int).cast(),
        std::mem::size_of::<libc::c_int>(),
    )
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_congestion_by_name(stream: &tokio::net::TcpStream, name: &str) -> io::Result<()> {
    setsockopt_tcp(
        stream,
        libc::TCP_CONGESTION,
        name.as_ptr().cast(),
        name.len(),
    )
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn get_congestion_name(stream: &tokio::net::TcpStream) -> io::Result<String> {
    use std::os::fd::AsRawFd;
    // TCP_CA_NAME_MAX is 16 bytes.
    let mut name = [0u8; 16];
    let mut len = name.len() as libc::socklen_t;
    // SAFETY: the descriptor is the live socket `stream` borrows; the
    // kernel writes at most `len` bytes into `name` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let written = name.get(..len as usize).unwrap_or(&name);
    let text = written.split(|b| *b == 0).next().unwrap_or_default();
    Ok(String::from_utf8_lossy(text).into_owned())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn setsockopt_tcp(
    stream: &tokio::net::TcpStream,
    option: libc::c_int,
    value: *const libc::c_void,
    len: usize,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::socklen_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: the descriptor is the live socket `stream` borrows, and
    // `value` points at `len` readable bytes for the duration of the call.
    let rc = unsafe { libc::setsockopt(stream.as_raw_fd(), libc::IPPROTO_TCP, option, value, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere only the budget in russh bounds the queue.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_notsent_lowat(_stream: &tokio::net::TcpStream, _bytes: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_congestion_by_name(_stream: &tokio::net::TcpStream, _name: &str) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn get_congestion_name(_stream: &tokio::net::TcpStream) -> io::Result<String> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn connected() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, server) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        (client.expect("connect"), server.expect("accept").0)
    }

    #[tokio::test]
    async fn a_socket_takes_the_controller_it_is_given() {
        let (client, _server) = connected().await;
        // reno is built into every Linux kernel.
        set_congestion_control(&client, TcpCongestion::Reno).expect("reno");
        assert_eq!(congestion_control(&client).expect("read back"), "reno");
    }

    #[tokio::test]
    async fn an_unknown_controller_says_how_to_get_it() {
        let (client, _server) = connected().await;
        let error = set_congestion_by_name(&client, "sshq-none").expect_err("no such module");
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        let text = CongestionError::NotAvailable("bbr").to_string();
        assert!(text.contains("modprobe tcp_bbr"), "{text}");
    }
}
