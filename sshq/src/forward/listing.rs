//! The connections open through forwards, for the `~#` escape: each
//! forwarded connection is listed while it is open, as ssh lists its
//! channels ("The following connections are open:").

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The open connections, by a number that only grows (ssh's channel ids).
/// Channel 0 is the session, listed by [`render`] itself.
static OPEN: Mutex<BTreeMap<u64, String>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(1);

fn open() -> std::sync::MutexGuard<'static, BTreeMap<u64, String>> {
    // Single inserts and removes: a poisoned map is consistent.
    OPEN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A listed connection; dropping it takes it off the list.
#[must_use = "the connection is listed while this lives"]
pub struct Listed(u64);

impl Drop for Listed {
    fn drop(&mut self) {
        open().remove(&self.0);
    }
}

/// Lists a connection under ssh's description of its channel, e.g.
/// `direct-tcpip: listening port 8080 for localhost port 80, connect from
/// 127.0.0.1 port 51000 to 127.0.0.1 port 8080`.
pub fn list(description: String) -> Listed {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    open().insert(id, description);
    Listed(id)
}

/// What `~#` prints: the session, then each open forwarded connection.
pub fn render() -> String {
    let mut text = String::from("The following connections are open:\r\n  #0 client-session\r\n");
    for (id, description) in open().iter() {
        text.push_str(&format!("  #{id} {description}\r\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_listed_while_open() {
        let first = list("direct-tcpip: one".into());
        let second = list("forwarded-tcpip: two".into());
        let text = render();
        assert!(text.starts_with("The following connections are open:\r\n  #0 client-session\r\n"));
        assert!(text.contains(" direct-tcpip: one\r\n"), "{text}");
        assert!(text.contains(" forwarded-tcpip: two\r\n"), "{text}");
        drop(first);
        let text = render();
        assert!(!text.contains("one"), "{text}");
        drop(second);
        assert!(!render().contains("two"));
    }
}
