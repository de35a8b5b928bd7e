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
        let socket = lab.path("agent.sock");
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
        let added = run_with_input(
            Command::new("ssh-add")
                .arg(lab.path("user"))
                .env("SSH_AUTH_SOCK", &agent.socket),
            b"",
        );
        assert!(added.status.success(), "ssh-add: {}", show(&added));
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
