//! A real OpenSSH agent for the agent-forwarding tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{run_with_input, show, wait_until, Lab};

/// A real `ssh-agent -D` on a socket in the lab, holding the lab's user
/// key, killed on drop.
pub struct Agent {
    child: Child,
    pub socket: PathBuf,
}

impl Agent {
    /// Starts the agent and loads the lab's user key into it.
    pub fn start(lab: &Lab) -> Agent {
        let agent = Agent::empty(lab, "agent.sock");
        agent.add(lab, "user");
        agent
    }

    /// Starts an agent holding no key, on the lab socket `name`.
    pub fn empty(lab: &Lab, name: &str) -> Agent {
        let socket = lab.path(name);
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent must be installed (openssh-client)");
        let agent = Agent { child, socket };
        assert!(
            wait_until(Duration::from_secs(10), || agent.socket.exists()),
            "ssh-agent did not create {}",
            agent.socket.display()
        );
        agent
    }

    /// `ssh-add` of the lab key `key` (ssh-add adds `key-cert.pub` too
    /// when it is there); returns what ssh-add said on stderr.
    pub fn add(&self, lab: &Lab, key: &str) -> String {
        let out = run_with_input(
            Command::new("ssh-add")
                .arg(lab.path(key))
                .env("SSH_AUTH_SOCK", &self.socket),
            b"",
        );
        assert!(out.status.success(), "ssh-add {key}: {}", show(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
