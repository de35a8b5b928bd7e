//! The client's name for `Match Host`, as sshd finds it (canohost.c
//! `remote_hostname`): with UseDNS yes, the reverse DNS name of its
//! address, kept only if that name resolves back to the address (a
//! forged PTR record names nothing); otherwise, and under UseDNS no (the
//! default), the address itself as text.

use std::ffi::CStr;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

use nix::libc;

/// How long the lookups may take before the address is used instead.
const DNS_LIMIT: Duration = Duration::from_secs(10);

/// The name `Match Host` sees for a client at `address`: `None` under
/// UseDNS no (the address then stands for it). The lookups run off the
/// async workers.
pub async fn client_host(address: Option<IpAddr>, use_dns: bool) -> Option<String> {
    let address = address.filter(|_| use_dns)?;
    let looked_up = crate::server::blocking::off_worker("reverse DNS lookup", DNS_LIMIT, {
        move || verified_name(address)
    })
    .await;
    Some(
        looked_up
            .ok()
            .flatten()
            .unwrap_or_else(|| address.to_string()),
    )
}

/// The address's reverse name, lower case, if it resolves back to it.
fn verified_name(address: IpAddr) -> Option<String> {
    let name = reverse_name(address)?;
    // A PTR record that looks like an address could fool Match Host.
    if name.parse::<IpAddr>().is_ok() {
        tracing::info!("Nasty PTR record \"{name}\" is set up for {address}, ignoring");
        return None;
    }
    let name = name.to_ascii_lowercase();
    let confirmed = (name.as_str(), 0)
        .to_socket_addrs()
        .map(|mut found| found.any(|back| back.ip() == address))
        .unwrap_or(false);
    if !confirmed {
        tracing::info!(
            "reverse mapping checking getaddrinfo for {name} [{address}] failed: \
             the name does not map back to the address"
        );
        return None;
    }
    Some(name)
}

/// getnameinfo with NI_NAMEREQD: the PTR name, or `None`.
fn reverse_name(address: IpAddr) -> Option<String> {
    // SAFETY: an all-zero sockaddr_storage is a valid value to fill in.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match address {
        IpAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // socket address.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: the socket address is valid for `len` bytes, and the host
    // buffer is writable for its whole length.
    let status = unsafe {
        libc::getnameinfo(
            std::ptr::addr_of!(storage).cast(),
            len as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if status != 0 {
        return None;
    }
    // SAFETY: getnameinfo wrote a NUL-terminated string into the buffer.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    name.to_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn use_dns_no_means_the_address() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(client_host(Some(local), false).await, None);
        // Loopback resolves both ways on any sane host ("localhost"); if
        // it does not, the address stands in.
        let name = client_host(Some(local), true).await.unwrap();
        let maps_back = (name.as_str(), 0)
            .to_socket_addrs()
            .is_ok_and(|mut found| found.any(|back| back.ip() == local));
        assert!(name == "127.0.0.1" || maps_back, "{name}");
    }
}
