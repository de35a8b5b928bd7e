use super::*;
use sshq_core::auth_methods::AuthMethod;

/// A load's error, shown with the temp file's path as `F`.
#[derive(Debug)]
struct LoadError {
    error: ServerConfigError,
    path: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error.to_string().replace(&self.path, "F"))
    }
}

/// Loads `text` from a temp file with `-o` options, `-p` ports and `-h` keys.
fn load_with(
    text: &str,
    opts: &[&str],
    ports: &[u16],
    keys: &[&str],
) -> Result<ServerConfig, LoadError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sshqd_config");
    std::fs::write(&path, text).unwrap();
    let opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
    let name = path.display().to_string();
    let loaded = ServerConfig::load(Some(&path), &opts, ports, &paths(keys));
    loaded.map_err(|error| LoadError { error, path: name })
}

fn load(text: &str) -> ServerConfig {
    load_with(text, &[], &[], &[]).unwrap()
}

fn err(text: &str) -> String {
    load_with(text, &[], &[], &[]).unwrap_err().to_string()
}

fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn keys_of(c: &ServerConfig) -> Vec<PathBuf> {
    c.authorized_keys_files("bob", Path::new("/home/bob"))
}

fn sub(name: &str, command: &str) -> (String, String) {
    (name.to_string(), command.to_string())
}

#[test]
fn the_example_config_parses() {
    let c = load(
        "Port 2222\nListenAddress 127.0.0.1\nHostKey /tmp/x/host_ed25519\n\
         AuthorizedKeysFile /tmp/x/authorized_keys\nPermitRootLogin prohibit-password\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n\
         PidFile none\nSubsystem sftp /usr/lib/openssh/sftp-server\nAllowAgentForwarding yes\n\
         AllowTcpForwarding yes\nTransports quic,tcp\nQuicRelay 127.0.0.1:22\n",
    );
    assert_eq!(c.listen_addrs(), addrs(&["127.0.0.1:2222"]));
    assert_eq!(c.host_keys, paths(&["/tmp/x/host_ed25519"]));
    assert_eq!(keys_of(&c), paths(&["/tmp/x/authorized_keys"]));
    assert_eq!(c.subsystems, [sub("sftp", "/usr/lib/openssh/sftp-server")]);
    assert_eq!(
        c.transports,
        Transports {
            quic: true,
            tcp: true
        }
    );
    assert_eq!(c.quic_relay.as_deref(), Some("127.0.0.1:22"));
    assert!(!c.strict_modes && !c.password_authentication && c.pid_file.is_none());
}

#[test]
fn defaults() {
    let c = load("# nothing\n");
    assert_eq!(c, ServerConfig::default());
    assert_eq!(ServerConfig::load(None, &[], &[], &[]).unwrap(), c);
    assert_eq!(c.listen_addrs(), addrs(&["0.0.0.0:22", "[::]:22"]));
    let keys = [
        "/home/bob/.ssh/authorized_keys",
        "/home/bob/.ssh/authorized_keys2",
    ];
    assert_eq!(keys_of(&c), paths(&keys));
    assert_eq!(c.host_keys.len(), 3);
    assert_eq!(c.permit_root_login, PermitRootLogin::ProhibitPassword);
    assert_eq!(c.max_auth_tries, 6);
    assert_eq!(c.login_grace_time, Some(Duration::from_secs(120)));
    assert!(c.pubkey_authentication && !c.password_authentication);
    assert!(!c.kbd_interactive_authentication && c.transports.quic && c.transports.tcp);
}

#[test]
fn every_keyword() {
    let c = load(
        "port 1\nPORT 2\nListenAddress [::1]:44\nListenAddress 10.0.0.1:55\nListenAddress ::1\n\
         ListenAddress 127.0.0.1\nHostKey /k1\nHostKey /k2\nAuthorizedKeysFile %h/.k %u/x /%%/y\n\
         PermitRootLogin without-password\nPubkeyAuthentication no\nPasswordAuthentication yes\n\
         ChallengeResponseAuthentication yes\nMaxAuthTries 3\nLoginGraceTime 1h30m\n\
         Subsystem sftp internal-sftp -l INFO\nSubsystem SFTP \"/usr/lib/a b\"\nLogLevel debug3\n\
         AllowTcpForwarding local\nGatewayPorts clientspecified\nPermitOpen host:22 *:80 [::1]:*\n\
         PermitListen 8080 localhost:9090\nAllowAgentForwarding no\nPidFile /run/sshqd.pid\n\
         StrictModes yes\nAcceptEnv LANG LC_*\nAcceptEnv LANG TZ\nPrintMotd no\nTCPKeepAlive no\nUsePAM no\n\
         Transports TCP\nKexAlgorithms -diffie-hellman*\nX11Forwarding yes\nPermitTTY yes\n\
         AllowStreamLocalForwarding remote\nStreamLocalBindUnlink yes\nStreamLocalBindMask 0077\n",
    );
    let want = [
        "[::1]:44",
        "10.0.0.1:55",
        "[::1]:1",
        "[::1]:2",
        "127.0.0.1:1",
        "127.0.0.1:2",
    ];
    assert_eq!(c.listen_addrs(), addrs(&want));
    assert_eq!(c.host_keys, paths(&["/k1", "/k2"]));
    assert_eq!(
        keys_of(&c),
        paths(&["/home/bob/.k", "/home/bob/bob/x", "/%/y"])
    );
    assert_eq!(c.permit_root_login, PermitRootLogin::ProhibitPassword);
    assert!(!c.pubkey_authentication && c.password_authentication);
    assert!(c.kbd_interactive_authentication);
    assert_eq!(c.max_auth_tries, 3);
    assert_eq!(c.login_grace_time, Some(Duration::from_secs(5400)));
    let subsystems = [
        sub("sftp", "internal-sftp -l INFO"),
        sub("SFTP", "/usr/lib/a b"),
    ];
    assert_eq!(c.subsystems, subsystems);
    assert_eq!(c.log_level, LogLevel::Debug3);
    assert_eq!(c.allow_tcp_forwarding, AllowTcpForwarding::Local);
    assert_eq!(c.gateway_ports, GatewayPorts::ClientSpecified);
    assert_eq!(c.allow_stream_local_forwarding, AllowTcpForwarding::Remote);
    assert!(c.stream_local_bind_unlink);
    assert_eq!(c.stream_local_bind_mask, 0o077);
    let open = &c.permit_open;
    assert!(open.allows("host", 22) && open.allows("any", 80) && open.allows("::1", 7));
    assert!(!open.allows("host", 23));
    let listen = &c.permit_listen;
    assert!(listen.allows("0.0.0.0", 8080) && listen.allows("LOCALHOST", 9090));
    assert!(!listen.allows("localhost", 8081));
    assert_eq!(c.pid_file, Some(PathBuf::from("/run/sshqd.pid")));
    assert!(!c.allow_agent_forwarding && c.strict_modes && !c.print_motd && !c.tcp_keepalive);
    assert_eq!(c.accept_env, ["LANG", "LC_*", "TZ"]);
    assert_eq!(
        c.transports,
        Transports {
            quic: false,
            tcp: true
        }
    );
    assert_eq!(c.kex_algorithms.as_deref(), Some("-diffie-hellman*"));
    assert_eq!(c.congestion_control, None);
    let c = load("CongestionControl newreno\n");
    assert_eq!(
        c.congestion_control,
        Some(sshq_quic::tls::CongestionControl::NewReno)
    );
    assert!(!c.one_stream_baseline, "the lab baseline is off by default");
    assert!(load("OneStreamBaseline yes\n").one_stream_baseline);
    let text =
        "LoginGraceTime 0\nAuthorizedKeysFile none\nPermitOpen none\nAllowTcpForwarding all\n";
    let c = load(text);
    assert_eq!((c.login_grace_time, keys_of(&c)), (None, vec![]));
    assert_eq!(c.permit_open, PermitList::Nothing);
    assert_eq!(c.allow_tcp_forwarding, AllowTcpForwarding::Yes);
}

#[test]
fn precedence() {
    let text = "Port 2\nPermitRootLogin no\nPermitRootLogin yes\nHostKey /file\nMaxAuthTries 9\n";
    let opts = [
        "Port=1",
        "PermitRootLogin forced-commands-only",
        "HostKey=/opt",
    ];
    let c = load_with(text, &opts, &[], &["/cli"]).unwrap();
    assert_eq!(c.ports, [1, 2]);
    assert_eq!(c.permit_root_login, PermitRootLogin::ForcedCommandsOnly);
    assert_eq!(c.host_keys, paths(&["/cli", "/opt", "/file"]));
    assert_eq!(c.max_auth_tries, 9);
    // -p replaces every Port, as in sshd.
    assert_eq!(
        load_with("Port 2\n", &["Port=3"], &[7], &[]).unwrap().ports,
        [7]
    );
}

#[test]
fn unknown_keywords_are_collected_with_sshd_wording() {
    let want = "F: line 2: Bad configuration option: Foo\n\
        F line 3: keyword Port extra arguments at end of line\n\
        F line 4: no argument after keyword \"bar\"\nF: line 5: Bad configuration option: Baz\n\
        F: terminating, 4 bad configuration options";
    assert_eq!(err("Port 2222\nFoo bar\nPort 22 x\nbar\nBaz 1\n"), want);
    let cli = load_with("", &["Foo=bar"], &[], &[])
        .unwrap_err()
        .to_string();
    assert_eq!(cli, "command-line: line 0: Bad configuration option: Foo");
}

#[test]
fn bad_values_stop_at_once() {
    let cases = [
        ("Port abc", "Badly formatted port number."),
        ("Port 0", "Badly formatted port number."),
        ("LoginGraceTime 2x", "invalid time value."),
        ("PermitRootLogin maybe", "unsupported option \"maybe\"."),
        ("CongestionControl vegas", "unsupported option \"vegas\"."),
        ("PubkeyAuthentication true", "unsupported option \"true\"."),
        ("MaxAuthTries x", "MaxAuthTries integer value invalid."),
        ("MaxAuthTries -1", "MaxAuthTries integer value too small."),
        ("LogLevel loud", "unsupported log level 'loud'"),
        (
            "GatewayPorts sometimes",
            "unsupported option \"sometimes\".",
        ),
        ("Subsystem sftp", "Missing subsystem command."),
        ("StreamLocalBindMask 1000", "Invalid StreamLocalBindMask."),
        (
            "AllowStreamLocalForwarding sometimes",
            "unsupported option \"sometimes\".",
        ),
        ("ListenAddress [::1", "bad address:port usage"),
        ("ListenAddress 1.2.3.4:x", "bad port number"),
        ("PermitOpen garbage", "PermitOpen bad port number"),
        ("AcceptEnv A=B", "Invalid environment name."),
        (
            "PAMServiceName a/b",
            "PAMServiceName \"a/b\": a PAM service is a file name in /etc/pam.d (no \"/\", not empty)",
        ),
        (
            "AuthenticationMethods publickey,secret",
            "invalid AuthenticationMethods method list: \
             Unknown authentication method \"secret\" in list \"publickey,secret\"",
        ),
        (
            "AuthenticationMethods any password",
            "\"any\" must appear alone in AuthenticationMethods",
        ),
        ("Match Version 9", "Unsupported Match attribute Version (sshqd matches User, Group, Host, Address, LocalAddress, LocalPort and All)"),
        ("Match RDomain vrf0", "Match RDomain is not supported by sshqd: it listens in no routing domain (VRF), so no connection has one to match"),
        ("Match LocalAddress 10.0.0.0/33", "Invalid Match localaddress argument '10.0.0.0/33'"),
        ("AuthorizedKeysCommand keys %u", "AuthorizedKeysCommand must be an absolute path"),
        ("AuthorizedKeysCommand /bin/keys %C", "AuthorizedKeysCommand: token %C is not supported by sshqd: it decides logins before it knows the connection's local address and routing domain"),
        ("AuthorizedKeysCommand /bin/keys %i", "AuthorizedKeysCommand: unknown token %i in \"/bin/keys %i\""),
        (
            "AuthorizedKeysFile %h/%x",
            "AuthorizedKeysFile: unknown token %x in \"%h/%x\"",
        ),
        (
            "Transports quic,udp",
            "unsupported transport \"udp\" (expected quic and/or tcp)",
        ),
        (
            "QuicRelay 127.0.0.1",
            "QuicRelay \"127.0.0.1\": expected host:port",
        ),
        ("AllowUsers none", "AllowUsers is not supported by sshqd"),
        ("PermitTTY no", "PermitTTY is not supported by sshqd"),
    ];
    for (line, message) in cases {
        let got = err(&format!("Foo 1\n{line}\nBar 2\n"));
        assert_eq!(got, format!("F line 2: {message}"), "{line}");
    }
    let dup = err("Subsystem sftp a\nSubsystem sftp b\n");
    assert_eq!(dup, "F line 2: Subsystem 'sftp' already defined.");
    let unresolvable = err("ListenAddress no-such-host.invalid\n");
    assert!(unresolvable.starts_with("bad addr or host: no-such-host.invalid ("));
    let missing = ServerConfig::load(Some(Path::new("/nonexistent/x")), &[], &[], &[]);
    assert_eq!(
        missing.unwrap_err().to_string(),
        "/nonexistent/x: No such file or directory"
    );
}

#[test]
fn includes_are_relative_to_the_including_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    write("conf.d/10-port.conf", "Port 2345\nPermitRootLogin no\n");
    write("conf.d/20-other.conf", "PermitRootLogin yes\n");
    write(
        "sshqd_config",
        "Include conf.d/*.conf\nInclude conf.d/none-*.conf\nPort 22\n",
    );
    let c = ServerConfig::load(Some(&dir.path().join("sshqd_config")), &[], &[], &[]).unwrap();
    assert_eq!(
        (c.ports, c.permit_root_login),
        (vec![2345, 22], PermitRootLogin::No)
    );
}

#[test]
fn max_sessions() {
    assert_eq!(load("").max_sessions, 10, "sshd's default");
    assert_eq!(load("MaxSessions 3\nMaxSessions 5\n").max_sessions, 3);
    assert_eq!(load("MaxSessions 0\n").max_sessions, 0);
    assert!(err("MaxSessions x\n").contains("MaxSessions integer value invalid."));
    assert!(err("MaxSessions -1\n").contains("MaxSessions integer value too small."));
}

#[test]
fn client_alive_and_syslog_facility() {
    let c = load("");
    assert_eq!(c.client_alive_interval, None);
    assert_eq!(c.client_alive_count_max, 3);
    assert_eq!(
        c.syslog_facility,
        crate::server::logging::SyslogFacility::Auth
    );
    let c = load("ClientAliveInterval 1m\nClientAliveCountMax 0\nSyslogFacility local5\n");
    assert_eq!(c.client_alive_interval, Some(Duration::from_secs(60)));
    assert_eq!(c.client_alive_count_max, 0);
    assert_eq!(
        c.syslog_facility,
        crate::server::logging::SyslogFacility::Local(5)
    );
    // 0 turns the requests off, as in sshd.
    assert_eq!(load("ClientAliveInterval 0\n").client_alive_interval, None);
    assert!(err("ClientAliveInterval x\n").ends_with("invalid time value."));
    assert!(err("SyslogFacility KERN\n").ends_with("unsupported log facility 'KERN'"));
}

#[test]
fn quic_idle_timeout_and_keep_alive() {
    use sshq_quic::tls::Liveness;
    assert_eq!(load("").quic_liveness, Liveness::SERVER);
    let c = load("QuicIdleTimeout 20\nQuicKeepAlive 5s\nQuicIdleTimeout 90\n");
    assert_eq!(c.quic_liveness.idle_timeout, Some(Duration::from_secs(20)));
    assert_eq!(c.quic_liveness.keep_alive, Some(Duration::from_secs(5)));
    assert_eq!(
        load("QuicIdleTimeout none\n").quic_liveness.idle_timeout,
        None
    );
    assert!(err("QuicKeepAlive -1\n").ends_with("invalid time value."));
}

#[test]
fn client_reattach_timeout_and_buffer() {
    let c = load("");
    assert_eq!(c.reattach.hold, Some(Duration::from_secs(3600)));
    assert_eq!(c.reattach.buffer, 16 * 1024 * 1024);
    let c = load("ClientReattachTimeout 5m\nClientReattachBuffer 64k\n");
    assert_eq!(c.reattach.hold, Some(Duration::from_secs(300)));
    assert_eq!(c.reattach.buffer, 64 * 1024);
    assert_eq!(load("ClientReattachTimeout 0\n").reattach.hold, None);
    assert_eq!(c.reattach.directory, None);
    let c = load("ClientReattachDirectory /run/x/held\n");
    assert_eq!(c.reattach.directory, Some("/run/x/held".into()));
    assert!(err("ClientReattachDirectory held\n").ends_with("is not an absolute path."));
    assert!(err("ClientReattachBuffer 1k\n").ends_with("is not a size from 64K to 1G."));
    assert!(err("ClientReattachBuffer 2G\n").ends_with("is not a size from 64K to 1G."));
    assert!(err("ClientReattachTimeout soon\n").ends_with("invalid time value."));
}

#[test]
fn text_from_memory_reads_as_the_file_does() {
    let good = "Port 2222\nListenAddress [::1]:2200\nPermitRootLogin no\n";
    let opts = ["PasswordAuthentication yes".to_string()];
    let from_memory = ServerConfig::parse_str("F", good, &opts).unwrap();
    let from_file = load_with(good, &["PasswordAuthentication yes"], &[], &[]).unwrap();
    assert_eq!(from_memory, from_file);
    assert_eq!(from_memory.ports, [2222]);
    assert!(from_memory.password_authentication);
    let bad = "Port 22\nPort x\nFrobnicate 1\n";
    let from_memory = ServerConfig::parse_str("F", bad, &[])
        .unwrap_err()
        .to_string();
    assert_eq!(from_memory, err(bad));
    // Host names are left for `load` to resolve.
    let named = ServerConfig::parse_str("F", "ListenAddress no-such-host.invalid\n", &[]);
    assert_eq!(
        named.unwrap().listen_addresses[0].host,
        "no-such-host.invalid"
    );
}

#[test]
fn use_pam_and_the_password_methods() {
    // Without PAM: no password methods, whatever is written (they count
    // only with UsePAM), and a startup note says so.
    let c = load("PasswordAuthentication yes\n");
    assert!(!c.use_pam && c.password_authentication && !c.kbd_interactive_authentication);
    assert_eq!(c.enabled_methods(), [AuthMethod::PublicKey]);
    assert_eq!(
        c.authentication_notes(),
        [
            "PasswordAuthentication yes needs UsePAM yes: sshqd checks passwords only \
          through PAM, so it offers no such method"
        ]
    );
    assert!(load("").authentication_notes().is_empty());
    // UsePAM yes: sshd's defaults (yes, yes), the service sshd uses.
    let c = load("UsePAM yes\n");
    assert!(c.use_pam && c.password_authentication && c.kbd_interactive_authentication);
    assert_eq!(c.pam_service_name, "sshd");
    let all = [
        AuthMethod::PublicKey,
        AuthMethod::KeyboardInteractive,
        AuthMethod::Password,
    ];
    assert_eq!(c.enabled_methods(), all);
    assert!(c.authentication_notes().is_empty());
    // What is written wins over the default, in any order; -o first.
    let c = load("PasswordAuthentication no\nUsePAM yes\nChallengeResponseAuthentication no\n");
    assert!(!c.password_authentication && !c.kbd_interactive_authentication);
    let c = load_with("UsePAM yes\n", &["PasswordAuthentication no"], &[], &[]).unwrap();
    assert!(!c.password_authentication && c.kbd_interactive_authentication);
    let c = load(
        "UsePAM yes\nPAMServiceName sshq-test\nPAMServiceName other\nPermitEmptyPasswords yes\n",
    );
    assert_eq!(c.pam_service_name, "sshq-test");
    assert!(c.authentication.permit_empty_passwords);
    // Global only: sshd has no UsePAM in Match, and PAMServiceName is ours.
    for line in ["UsePAM yes", "PAMServiceName x"] {
        let got = err(&format!("Match User bob\n  {line}\n"));
        assert!(got.contains("is not allowed within a Match block"), "{got}");
    }
}

#[test]
fn authentication_methods_must_be_satisfiable() {
    let c = load(
        "UsePAM yes\nAuthenticationMethods publickey,password publickey,keyboard-interactive:pam\n",
    );
    let AuthenticationMethods::Lists(lists) = &c.authentication.authentication_methods else {
        panic!("any");
    };
    assert_eq!(lists.len(), 2);
    assert_eq!(
        load("AuthenticationMethods any\n")
            .authentication
            .authentication_methods,
        AuthenticationMethods::Any
    );
    // A list with a disabled method is skipped; one usable list suffices.
    load("AuthenticationMethods publickey,password publickey\n");
    // None usable: sshd refuses to start (sshd -t too).
    let got =
        err("PubkeyAuthentication no\nUsePAM yes\nAuthenticationMethods publickey,password\n");
    assert_eq!(
        got,
        "AuthenticationMethods cannot be satisfied by enabled authentication methods \
         (Disabled method \"publickey\" in AuthenticationMethods list \"publickey,password\")"
    );
    let got = err("PasswordAuthentication yes\nAuthenticationMethods publickey,password\n");
    assert!(
        got.ends_with("checks passwords and keyboard-interactive only through PAM: set UsePAM yes"),
        "{got}"
    );
    assert!(err("AuthenticationMethods hostbased\n")
        .starts_with("AuthenticationMethods cannot be satisfied"));
    // From memory as well (the fuzz targets' path).
    assert!(ServerConfig::parse_str("F", "AuthenticationMethods password\n", &[]).is_err());
}

#[test]
fn authentication_keywords_in_match_blocks() {
    let text = "UsePAM yes\n\
                Match User alice\n  AuthenticationMethods publickey,password\n\
                \x20 PasswordAuthentication no\n  PermitEmptyPasswords yes\n\
                \x20 KbdInteractiveAuthentication no\n  PubkeyAuthentication no\n";
    let c = load(text);
    let alice = ConnectionFacts {
        user: "alice".into(),
        ..ConnectionFacts::default()
    };
    let matched = c.for_connection(&alice).unwrap();
    assert!(!matched.password_authentication && !matched.kbd_interactive_authentication);
    assert!(!matched.pubkey_authentication && matched.authentication.permit_empty_passwords);
    assert!(matches!(
        matched.authentication.authentication_methods,
        AuthenticationMethods::Lists(_)
    ));
    // The global settings are untouched.
    assert!(c.password_authentication && c.pubkey_authentication);
    assert_eq!(
        c.authentication.authentication_methods,
        AuthenticationMethods::Any
    );
    // Logins are decided without the local port.
    for line in [
        "AuthenticationMethods publickey",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitEmptyPasswords no",
    ] {
        let got = err(&format!("Match LocalPort 2222\n  {line}\n"));
        assert!(
            got.contains("cannot be set in a Match LocalPort or LocalAddress block"),
            "{got}"
        );
    }
}

#[test]
fn login_sources_from_the_file() {
    let text = "AuthorizedKeysCommand /usr/local/bin/keys %u %f\n\
                AuthorizedKeysCommandUser nobody\n\
                AuthorizedPrincipalsCommand none\n\
                PermitUserEnvironment LANG,LC_*\n\
                UseDNS yes\n\
                Match User alice\n  AuthorizedKeysCommand /opt/other %u\n";
    let c = ServerConfig::parse_str("F", text, &[]).unwrap();
    let sources = &c.login_sources;
    assert_eq!(
        sources.authorized_keys_command.as_deref(),
        Some("/usr/local/bin/keys %u %f")
    );
    assert_eq!(
        sources.authorized_keys_command_user.as_deref(),
        Some("nobody")
    );
    assert_eq!(sources.authorized_principals_command, None);
    assert_eq!(
        sources.permit_user_environment,
        super::PermitUserEnvironment::Only("LANG,LC_*".into())
    );
    assert!(sources.use_dns);
    let alice = ConnectionFacts {
        user: "alice".into(),
        ..ConnectionFacts::default()
    };
    let matched = c.for_connection(&alice).unwrap();
    assert_eq!(
        matched.login_sources.authorized_keys_command.as_deref(),
        Some("/opt/other %u")
    );
    // sshd's fatal check: a command needs its user.
    let got = ServerConfig::parse_str("F", "AuthorizedKeysCommand /bin/k\n", &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        got,
        "AuthorizedKeysCommand set without AuthorizedKeysCommandUser"
    );
    // Not in Match, as in sshd.
    let got = ServerConfig::parse_str("F", "Match User a\n  PermitUserEnvironment yes\n", &[])
        .unwrap_err()
        .to_string();
    assert!(got.contains("not allowed within a Match block"), "{got}");
}

#[test]
fn match_host_and_local_address_blocks() {
    let text = "PermitOpen any\n\
                Match Host 192.0.2.*\n  PermitOpen db:5432\n\
                Match LocalAddress 127.0.0.2\n  AllowTcpForwarding no\n";
    let c = ServerConfig::parse_str("F", text, &[]).unwrap();
    let client = ConnectionFacts {
        user: "u".into(),
        address: "192.0.2.9".parse().ok(),
        local_address: "127.0.0.2".parse().ok(),
        ..ConnectionFacts::default()
    };
    let matched = c.for_connection(&client).unwrap();
    assert_eq!(
        matched.permit_open,
        PermitList::Only(vec!["db:5432".into()])
    );
    assert_eq!(matched.allow_tcp_forwarding, AllowTcpForwarding::No);
    let other = ConnectionFacts {
        address: "198.51.100.1".parse().ok(),
        local_address: "127.0.0.1".parse().ok(),
        ..client
    };
    let matched = c.for_connection(&other).unwrap();
    assert_eq!(matched.permit_open, PermitList::Any);
    assert_eq!(matched.allow_tcp_forwarding, AllowTcpForwarding::Yes);
}
