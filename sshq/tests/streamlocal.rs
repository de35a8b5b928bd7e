//! Unix-domain socket forwarding (OpenSSH's streamlocal extensions) end to
//! end, with real processes and sockets: every -L and -R form with a socket
//! on either side, sshq against sshqd over TCP and over QUIC, OpenSSH's ssh
//! against sshqd, and sshq against OpenSSH's sshd. Also: sockets belong to
//! the logged-in user and are made with its rights, they go away with
//! their forward, and AllowStreamLocalForwarding refusals leave the session
//! running.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    check_echo, echo_service, echo_works_within, random_bytes, start_sshqd_both, text, wait_until,
    Background, Endpoint, Lab, Server, TcpService, UnixEchoService, SSHQ,
};

/// The six socket forms at once, with the endpoints a test reaches them by.
struct Forms {
    args: Vec<String>,
    /// (what the forward is, where the test connects to use it)
    endpoints: Vec<(String, Endpoint)>,
    /// Socket files the client makes (-L) and the server makes (-R).
    client_sockets: Vec<PathBuf>,
    server_sockets: Vec<PathBuf>,
    _tcp_echo: TcpService,
    _unix_echo: UnixEchoService,
}

/// `-L` and `-R` in every form that has a socket: socket to port, port to
/// socket and socket to socket, each way; the targets are echo services.
fn all_socket_forms(lab: &Lab) -> Forms {
    let tcp_echo = echo_service();
    let unix_echo = UnixEchoService::start(lab.path("echo.sock"));
    let echo_port = tcp_echo.port;
    let echo_path = unix_echo.path.display().to_string();
    let (l_sock, l_sock2) = (lab.path("l.sock"), lab.path("l2.sock"));
    let (r_sock, r_sock2) = (lab.path("r.sock"), lab.path("r2.sock"));
    let (l_port, r_port) = (common::free_port(), common::free_port());
    let d = |p: &Path| p.display().to_string();
    let specs = [
        ("-L", format!("{}:127.0.0.1:{echo_port}", d(&l_sock))),
        ("-L", format!("{l_port}:{echo_path}")),
        ("-L", format!("{}:{echo_path}", d(&l_sock2))),
        ("-R", format!("{}:127.0.0.1:{echo_port}", d(&r_sock))),
        ("-R", format!("{r_port}:{echo_path}")),
        ("-R", format!("{}:{echo_path}", d(&r_sock2))),
    ];
    let reach = [
        Endpoint::Path(l_sock.clone()),
        Endpoint::Port(l_port),
        Endpoint::Path(l_sock2.clone()),
        Endpoint::Path(r_sock.clone()),
        Endpoint::Port(r_port),
        Endpoint::Path(r_sock2.clone()),
    ];
    let mut args = vec![];
    let mut endpoints = vec![];
    for ((flag, spec), to) in specs.into_iter().zip(reach) {
        endpoints.push((format!("{flag} {spec}"), to));
        args.push(flag.to_string());
        args.push(spec);
    }
    Forms {
        args,
        endpoints,
        client_sockets: vec![l_sock, l_sock2],
        server_sockets: vec![r_sock, r_sock2],
        _tcp_echo: tcp_echo,
        _unix_echo: unix_echo,
    }
}

/// Runs `program` (sshq or ssh) in the background with `forms` and a
/// command that keeps the session open for `seconds`; checks that every
/// form carries 1 MiB back and forth while it runs, and that the socket
/// files are mode 0600 and owned by us.
fn check_all_forms(
    lab: &Lab,
    server: &Server,
    program: &str,
    extra: &[&str],
    forms: &Forms,
    seconds: u32,
) -> Background {
    let mut options: Vec<&str> = extra.to_vec();
    options.extend(forms.args.iter().map(String::as_str));
    let command = format!("sleep {seconds}");
    let args = lab.client_args("user", "accept-new", server.port, &options, &[&command]);
    let mut client = Background::spawn(program, &args, lab.path(&format!("{program}.log")));
    let data = random_bytes(1 << 20);
    for (what, to) in &forms.endpoints {
        let up = echo_works_within(to, Duration::from_secs(20));
        let result = if up {
            check_echo(to, &data)
        } else {
            Err("never carried a first echo".to_string())
        };
        if let Err(e) = result {
            panic!(
                "{program} {what} ({extra:?}): {e}\nclient log:\n{}\nserver log:\n{}",
                client.log_text(),
                server.log_text()
            );
        }
    }
    for socket in forms.client_sockets.iter().chain(&forms.server_sockets) {
        let meta = std::fs::metadata(socket).expect("socket file");
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{} has mode {:o}",
            socket.display(),
            meta.permissions().mode() & 0o777
        );
        assert_eq!(meta.uid(), nix_uid(), "{} owner", socket.display());
    }
    assert!(client.alive(), "{program} exited:\n{}", client.log_text());
    client
}

fn nix_uid() -> u32 {
    let out = std::process::Command::new("id")
        .arg("-u")
        .output()
        .expect("id");
    text(&out.stdout).trim().parse().expect("uid")
}

/// Waits for the client to finish its command, then for every socket file
/// to be gone.
fn assert_sockets_removed(client: &mut Background, sockets: &[PathBuf], server: &Server) {
    assert!(
        wait_until(Duration::from_secs(30), || !client.alive()),
        "client still running:\n{}",
        client.log_text()
    );
    for socket in sockets {
        assert!(
            wait_until(Duration::from_secs(10), || !socket.exists()),
            "{} left behind after the forward ended\nclient log:\n{}\nserver log:\n{}",
            socket.display(),
            client.log_text(),
            server.log_text()
        );
    }
}

/// Every socket form through sshqd, over `transport`; the client's and
/// the server's socket files are removed when the session ends.
fn socket_forms_through_sshqd(transport: &str) {
    let lab = Lab::new();
    let server = start_sshqd_both(&lab, "");
    let forms = all_socket_forms(&lab);
    let transport_opt = format!("Transport={transport}");
    let mut client = check_all_forms(&lab, &server, SSHQ, &["-o", &transport_opt], &forms, 4);
    let mut sockets = forms.client_sockets.clone();
    sockets.extend(forms.server_sockets.iter().cloned());
    assert_sockets_removed(&mut client, &sockets, &server);
}

#[test]
fn socket_forms_through_sshqd_over_tcp() {
    socket_forms_through_sshqd("tcp");
}

#[test]
fn socket_forms_through_sshqd_over_quic() {
    socket_forms_through_sshqd("quic");
}

/// OpenSSH's ssh, every socket form, through sshqd; sshqd removes its
/// sockets when ssh goes.
#[test]
fn openssh_socket_forms_through_sshqd() {
    let lab = Lab::new();
    let server = start_sshqd_both(&lab, "");
    let forms = all_socket_forms(&lab);
    let mut client = check_all_forms(&lab, &server, "ssh", &[], &forms, 4);
    assert_sockets_removed(&mut client, &forms.server_sockets, &server);
}

/// sshq, every socket form, through OpenSSH's sshd.
#[test]
fn sshq_socket_forms_through_openssh_sshd() {
    let lab = Lab::new();
    let server = lab.start_sshd();
    let forms = all_socket_forms(&lab);
    let mut client = check_all_forms(&lab, &server, SSHQ, &["-o", "Transport=tcp"], &forms, 3);
    assert_sockets_removed(&mut client, &forms.client_sockets, &server);
}

/// A user other than sshqd's: its -R socket is made with its rights (owned
/// by it, refused where it may not write), and its -L cannot reach a
/// socket it may not reach, though sshqd (root) could.
#[test]
fn sockets_are_made_and_reached_with_the_users_rights() {
    if !common::needs_root("to log in as another user (nobody)") {
        return;
    }
    let lab = Lab::new();
    // The lab directory is root's, mode 0700; nobody gets a directory of its own.
    let theirs = lab.path("nobody-dir");
    std::fs::create_dir(&theirs).expect("mkdir");
    let chown = std::process::Command::new("chown")
        .args(["nobody:nogroup"])
        .arg(&theirs)
        .status()
        .expect("chown");
    assert!(chown.success());
    std::fs::set_permissions(lab.dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod the lab directory");
    let private = UnixEchoService::start(lab.path("private.sock"));
    std::fs::set_permissions(&private.path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let server = start_sshqd_both(&lab, "");
    let echo = echo_service();
    let allowed = theirs.join("r.sock");
    let denied = lab.path("denied.sock");
    let local = common::free_port();
    let mut args = lab.client_opts("user");
    for spec in [
        format!("-R{}:127.0.0.1:{}", allowed.display(), echo.port),
        format!("-R{}:127.0.0.1:{}", denied.display(), echo.port),
        format!("-L{local}:{}", private.path.display()),
    ] {
        args.push(spec);
    }
    args.extend(
        [
            "-o",
            "Transport=tcp",
            "-N",
            "-p",
            &server.port.to_string(),
            "nobody@127.0.0.1",
        ]
        .map(String::from),
    );
    let mut client = Background::spawn(SSHQ, &args, lab.path("nobody.log"));
    let up = echo_works_within(&Endpoint::Path(allowed.clone()), Duration::from_secs(20));
    assert!(
        up,
        "-R into nobody's directory does not work\nclient log:\n{}\nserver log:\n{}",
        client.log_text(),
        server.log_text()
    );
    let meta = std::fs::metadata(&allowed).expect("socket");
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (65534, 0o600)
    );
    assert!(
        wait_until(Duration::from_secs(10), || client.log_text().contains(
            &format!(
                "Warning: remote port forwarding failed for listen path {}",
                denied.display()
            )
        )),
        "no warning for the socket nobody may not make:\n{}",
        client.log_text()
    );
    assert!(
        !denied.exists(),
        "sshqd made {} for nobody",
        denied.display()
    );
    assert!(
        server.log_text().contains("Permission denied"),
        "{}",
        server.log_text()
    );
    // Listening works; reaching the root-only socket through it does not.
    let reached = check_echo(&Endpoint::Port(local), b"secret");
    assert!(reached.is_err(), "nobody reached a root-only socket");
    assert!(
        wait_until(Duration::from_secs(10), || client
            .log_text()
            .contains("open failed")),
        "no report of the refused channel:\n{}",
        client.log_text()
    );
    assert!(client.alive(), "sshq exited:\n{}", client.log_text());
}

/// AllowStreamLocalForwarding refuses one direction with its reason in
/// sshqd's log; sshq warns as ssh does and the command still runs, and the
/// other direction works.
fn policy(transport: &str) {
    for (setting, refused, allowed) in [("local", "-R", "-L"), ("remote", "-L", "-R")] {
        let lab = Lab::new();
        let server = start_sshqd_both(&lab, &format!("AllowStreamLocalForwarding {setting}"));
        let unix_echo = UnixEchoService::start(lab.path("echo.sock"));
        let tcp_echo = echo_service();
        let local_port = common::free_port();
        let (l_spec, l_reach) = (
            format!("{local_port}:{}", unix_echo.path.display()),
            Endpoint::Port(local_port),
        );
        let r_sock = lab.path("r.sock");
        let (r_spec, r_reach) = (
            format!("{}:127.0.0.1:{}", r_sock.display(), tcp_echo.port),
            Endpoint::Path(r_sock.clone()),
        );
        let transport_opt = format!("Transport={transport}");
        let args = lab.client_args(
            "user",
            "accept-new",
            server.port,
            &["-o", &transport_opt, "-L", &l_spec, "-R", &r_spec],
            &["sleep 3; echo still-here"],
        );
        let client_log = lab.path("client.log");
        let client = std::process::Command::new(SSHQ)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&client_log).expect("log"))
            .spawn()
            .expect("sshq");
        let reach = |flag: &str| if flag == "-L" { &l_reach } else { &r_reach };
        let works = echo_works_within(reach(allowed), Duration::from_secs(20));
        let refused_reached = check_echo(reach(refused), b"x").is_ok();
        let out = client.wait_with_output().expect("sshq output");
        let log = std::fs::read_to_string(&client_log).unwrap_or_default();
        let context = format!(
            "AllowStreamLocalForwarding {setting} over {transport}\nclient log:\n{log}\nserver log:\n{}",
            server.log_text()
        );
        assert!(works, "the allowed {allowed} does not work: {context}");
        assert!(!refused_reached, "the refused {refused} worked: {context}");
        assert_eq!(text(&out.stdout).trim(), "still-here", "{context}");
        assert_eq!(out.status.code(), Some(0), "{context}");
        if refused == "-R" {
            assert!(
                log.contains(&format!(
                    "Warning: remote port forwarding failed for listen path {}",
                    r_sock.display()
                )),
                "{context}"
            );
        } else {
            assert!(log.contains("open failed"), "{context}");
        }
        assert!(
            server.log_text().contains("AllowStreamLocalForwarding"),
            "the refusal's reason is not logged: {context}"
        );
    }
}

#[test]
fn allow_stream_local_forwarding_over_tcp() {
    policy("tcp");
}

#[test]
fn allow_stream_local_forwarding_over_quic() {
    policy("quic");
}

/// A socket file left behind by a listener that is gone.
fn stale_socket(path: &Path) {
    drop(std::os::unix::net::UnixListener::bind(path).expect("bind"));
    assert!(path.exists());
}

/// A stale socket where -L wants to listen: without StreamLocalBindUnlink
/// ssh and sshq say the same and run the command anyway; with it, both
/// replace the file and forward.
#[test]
fn stream_local_bind_unlink_on_the_client_matches_openssh() {
    let lab = Lab::new();
    let server = lab.start_sshd();
    let sock = lab.path("stale.sock");
    let spec = format!("{}:127.0.0.1:{}", sock.display(), server.port);
    for program in ["ssh", SSHQ] {
        stale_socket(&sock);
        let out = lab.client(
            program,
            "user",
            server.port,
            &["-L", &spec],
            &["echo", "ran"],
            b"",
        );
        let stderr = text(&out.stderr);
        let context = format!("{program}: {}", common::show(&out));
        assert!(
            stderr.contains(&format!(
                "unix_listener: cannot bind to path {}: Address already in use",
                sock.display()
            )) && stderr.contains("Could not request local forwarding."),
            "{context}"
        );
        assert_eq!(
            (text(&out.stdout).trim(), out.status.code()),
            ("ran", Some(0)),
            "{context}"
        );

        let out = lab.client(
            program,
            "user",
            server.port,
            &["-o", "StreamLocalBindUnlink=yes", "-L", &spec],
            &["echo", "ran"],
            b"",
        );
        let context = format!(
            "{program} with StreamLocalBindUnlink: {}",
            common::show(&out)
        );
        assert!(!text(&out.stderr).contains("cannot bind"), "{context}");
        assert_eq!(text(&out.stdout).trim(), "ran", "{context}");
        let _ = std::fs::remove_file(&sock);
    }
}

/// sshqd's StreamLocalBindUnlink: a stale socket at an -R path is refused
/// without it and replaced with it.
#[test]
fn stream_local_bind_unlink_on_sshqd() {
    for (setting, works) in [("no", false), ("yes", true)] {
        let lab = Lab::new();
        let server = start_sshqd_both(&lab, &format!("StreamLocalBindUnlink {setting}"));
        let echo = echo_service();
        let sock = lab.path("stale.sock");
        stale_socket(&sock);
        let spec = format!("{}:127.0.0.1:{}", sock.display(), echo.port);
        let args = lab.client_args(
            "user",
            "accept-new",
            server.port,
            &["-R", &spec],
            &[&common::ready_then_still_here(1)],
        );
        let (out, reached) =
            common::run_forwarding_client(SSHQ, &args, lab.path("sshq.log"), || {
                check_echo(&Endpoint::Path(sock.clone()), b"stale?").is_ok()
            });
        let context = format!(
            "StreamLocalBindUnlink {setting}: {}\nserver log:\n{}",
            common::show(&out),
            server.log_text()
        );
        assert_eq!(reached, works, "{context}");
        assert_eq!(
            text(&out.stderr).contains("Warning: remote port forwarding failed for listen path"),
            !works,
            "{context}"
        );
        assert_eq!(text(&out.stdout).trim(), "still-here", "{context}");
    }
}
