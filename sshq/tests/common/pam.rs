//! A PAM service for tests (needs root): `/etc/pam.d/sshq-test-<random>`
//! whose `auth` stage accepts one password for one user, checked by a
//! small script through pam_exec (no real password is ever involved), and
//! whose `account` stage refuses while a nologin file of its own exists
//! (checked by pam_exec, so root is refused too). `auth optional
//! pam_permit` gives the stack a module that establishes credentials, so
//! pam_setcred succeeds as on a real system. Everything is removed when
//! the service is dropped.
//!
//! Shared by the integration tests (`common::pam`) and sshqd's unit tests
//! (included by path from src/server/auth/pam/tests.rs), so it uses only
//! the standard library.
//!
//! ```text
//! let pam = TestPamService::install("nobody", TEST_PASSWORD);
//! // sshqd_config: pam.config_lines() ("UsePAM yes", "PAMServiceName ...")
//! pam.block_logins();   // pam_acct_mgmt now refuses (nologin file)
//! pam.allow_logins();
//! ```

#![allow(dead_code)] // each user takes its own part

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A password for test users; never anyone's real one.
pub const TEST_PASSWORD: &str = "sshq-correct-horse";

/// Where PAM reads service files.
const PAM_DIR: &str = "/etc/pam.d";

/// An installed test service; uninstalled on drop.
pub struct TestPamService {
    name: String,
    /// Holds the checker script and the nologin file.
    dir: PathBuf,
    nologin: PathBuf,
}

impl TestPamService {
    /// A service that accepts `password` for `user` and nothing else.
    pub fn install(user: &str, password: &str) -> TestPamService {
        Self::install_with_info(user, password, None)
    }

    /// As [`TestPamService::install`], and the `auth` stage first shows
    /// `info` (a PAM_TEXT_INFO message, through pam_echo), the way a
    /// service shows a banner or a hint before its prompt. `info` must not
    /// hold `%`, `[` or `]` (pam_echo and the pam.d syntax give them
    /// meanings).
    pub fn install_with_info(user: &str, password: &str, info: Option<&str>) -> TestPamService {
        for value in [user, password] {
            assert!(
                !value.contains('\'') && !value.contains('\0'),
                "test PAM values are quoted for sh: no ' or NUL"
            );
        }
        let token = random_hex();
        let name = format!("sshq-test-{token}");
        let dir = std::env::temp_dir().join(format!("sshq-pam-{token}"));
        std::fs::create_dir(&dir).expect("test PAM directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .expect("test PAM directory mode");
        let checker = dir.join("check-password");
        // pam_exec's expose_authtok writes the password to standard input
        // (NUL-terminated); PAM_USER names the user.
        let script = format!(
            "#!/bin/sh\n\
             # sshq test PAM service {name}: one password for one user.\n\
             [ \"$PAM_USER\" = '{user}' ] || exit 1\n\
             password=$(tr -d '\\000')\n\
             [ \"$password\" = '{password}' ]\n"
        );
        std::fs::write(&checker, script).expect("test PAM checker");
        std::fs::set_permissions(&checker, std::fs::Permissions::from_mode(0o700))
            .expect("test PAM checker mode");
        let nologin = dir.join("nologin");
        let mut service = String::from("# sshq tests; removed when the test ends.\n");
        if let Some(info) = info {
            assert!(
                !info.contains(['%', '[', ']']),
                "pam_echo text: no %, [ or ]"
            );
            service.push_str(&format!("auth optional pam_echo.so [{info}]\n"));
        }
        service.push_str(&format!(
            "auth required pam_exec.so quiet expose_authtok {}\n\
             auth optional pam_permit.so\n\
             account required pam_exec.so quiet /usr/bin/test ! -e {}\n\
             account required pam_permit.so\n\
             password required pam_deny.so\n\
             session required pam_permit.so\n",
            checker.display(),
            nologin.display()
        ));
        let file = Path::new(PAM_DIR).join(&name);
        std::fs::write(&file, service).expect("write the test PAM service (needs root)");
        TestPamService { name, dir, nologin }
    }

    /// The service name (PAMServiceName).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// sshqd_config lines that use this service.
    pub fn config_lines(&self) -> String {
        format!("UsePAM yes\nPAMServiceName {}\n", self.name)
    }

    /// The nologin file the account stage looks at.
    pub fn nologin_file(&self) -> &Path {
        &self.nologin
    }

    /// From now on the account stage refuses every user, root included
    /// (a pam_exec check of the file; pam_nologin would let root in).
    pub fn block_logins(&self) {
        std::fs::write(&self.nologin, "sshq test: logins are blocked\n").expect("nologin file");
    }

    /// Undoes [`TestPamService::block_logins`].
    pub fn allow_logins(&self) {
        let _ = std::fs::remove_file(&self.nologin);
    }
}

impl Drop for TestPamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(Path::new(PAM_DIR).join(&self.name));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 16 hex digits from /dev/urandom, for names no other test takes.
fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
