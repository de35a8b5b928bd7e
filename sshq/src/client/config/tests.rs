use super::*;

/// A parse's error, shown with the temp file's path as `F`.
#[derive(Debug)]
struct ParseError {
    error: ConfigError,
    path: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error.to_string().replace(&self.path, "F"))
    }
}

/// Applies `text` from a temp file for `host`.
fn parse_with(o: &mut ClientOptions, text: &str, host: &str) -> Result<(), ParseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, text).unwrap();
    let name = path.display().to_string();
    o.apply_file(&path, host)
        .map_err(|error| ParseError { error, path: name })
}

fn parse(text: &str, host: &str) -> Result<ClientOptions, ParseError> {
    let mut o = ClientOptions::default();
    parse_with(&mut o, text, host).map(|()| o)
}

fn err(text: &str) -> String {
    parse(text, "h").unwrap_err().to_string()
}

fn cli_err(option: &str) -> String {
    let mut o = ClientOptions::default();
    o.apply_option_str(option).unwrap_err().to_string()
}

fn pair(name: &str, value: &str) -> (String, String) {
    (name.to_string(), value.to_string())
}

#[test]
fn every_keyword() {
    let home = home_dir().unwrap();
    let text = "HostName real.example\nUser bob\nPort 2222\nIdentityFile ~/.ssh/a\nIdentityFile /k/b\n\
        IdentityFile ~/.ssh/a\nIdentitiesOnly yes\nBatchMode true\nStrictHostKeyChecking accept-new\n\
        UserKnownHostsFile ~/kh1 /kh2\nGlobalKnownHostsFile /g1\nLogLevel debug2\nConnectTimeout 1m30s\nServerAliveInterval 15\n\
        ServerAliveCountMax 4\nRequestTTY force\nSendEnv LANG LC_*\nSendEnv FOO\nSendEnv -LC_*\n\
        SetEnv A=1 B=x=y A=2\nSetEnv C=3\nProxyJump jump@gw:22\nLocalForward 8080 localhost:80\n\
        RemoteForward 9090 localhost:90\nRemoteForward 1080\nDynamicForward 1081\n\
        ForwardAgent ~/agent.sock\nExitOnForwardFailure yes\nStreamLocalBindUnlink yes\n\
        StreamLocalBindMask 0117\nClearAllForwardings no\nIgnoreUnknown UseKeychain\nTransport quic\nQuicPort 4433\n\
        KexAlgorithms +curve25519-sha256\nQuicFallbackTimeout 250ms\nCongestionControl BBR\nOneStreamBaseline yes\n\
        QuicIdleTimeout 5m\nQuicKeepAlive none\nTCPKeepAlive no\n\
        PreferredAuthentications password,publickey\nPubkeyAuthentication host-bound\n\
        PasswordAuthentication no\nKbdInteractiveAuthentication yes\nNumberOfPasswordPrompts 5\n";
    let agent = home.join("agent.sock").display().to_string();
    let expected = ClientOptions {
        host_name: Some("real.example".into()),
        user: Some("bob".into()),
        port: Some(2222),
        identity_files: vec![home.join(".ssh/a"), "/k/b".into()],
        certificate_files: Vec::new(),
        identities_only: Some(true),
        batch_mode: Some(true),
        preferred_authentications: Some("password,publickey".into()),
        pubkey_authentication: Some(true),
        password_authentication: Some(false),
        kbd_interactive_authentication: Some(true),
        number_of_password_prompts: Some(5),
        clear_all_forwardings: Some(false),
        strict_host_key_checking: Some(StrictHostKeyChecking::AcceptNew),
        user_known_hosts_files: Some(vec![home.join("kh1"), "/kh2".into()]),
        global_known_hosts_files: Some(vec!["/g1".into()]),
        log_level: Some(LogLevel::Debug2),
        connect_timeout: Some(Duration::from_secs(90)),
        server_alive_interval: Some(Duration::from_secs(15)),
        server_alive_count_max: Some(4),
        request_tty: Some(RequestTty::Force),
        send_env: vec!["LANG".into(), "FOO".into()],
        set_env: Some(vec![pair("A", "1"), pair("B", "x=y")]),
        proxy_jump: Some("jump@gw:22".into()),
        proxy_command: None,
        local_forwards: vec!["8080:localhost:80".into()],
        remote_forwards: vec!["9090:localhost:90".into(), "1080".into()],
        dynamic_forwards: vec!["1081".into()],
        forward_agent: Some(ForwardAgent::Socket(agent)),
        exit_on_forward_failure: Some(true),
        stream_local_bind_unlink: Some(true),
        stream_local_bind_mask: Some(0o117),
        ignore_unknown: Some("UseKeychain".into()),
        transport: Some(Transport::Quic),
        quic_port: Some(4433),
        tcp_keepalive: Some(false),
        kex_algorithms: Some("+curve25519-sha256".into()),
        quic_fallback_timeout: Some(Duration::from_millis(250)),
        congestion_control: Some(sshq_quic::tls::CongestionControl::Bbr),
        one_stream_baseline: Some(true),
        quic_idle_timeout: Some(Some(Duration::from_secs(300))),
        quic_keep_alive: Some(None),
        reattach: None,
        escape_char: None,
    };
    assert_eq!(parse(text, "h").map_err(|e| e.to_string()), Ok(expected));
    let text = "ForwardAgent no\nConnectTimeout none\nUserKnownHostsFile none\nTransport AUTO\n";
    let o = parse(text, "h").unwrap();
    assert_eq!(o.forward_agent, Some(ForwardAgent::No));
    assert_eq!(o.connect_timeout, Some(Duration::ZERO));
    assert_eq!(o.user_known_hosts_files, Some(vec![]));
    assert_eq!(o.transport, Some(Transport::Auto));
}

#[test]
fn reattach_and_escape_char() {
    let o = parse("Reattach no\nEscapeChar ^]\n", "h").unwrap();
    assert_eq!((o.reattach, o.escape_char), (Some(false), Some(Some(0x1d))));
    assert_eq!(
        parse("EscapeChar none\n", "h").unwrap().escape_char,
        Some(None)
    );
    assert_eq!(
        parse("EscapeChar %\n", "h").unwrap().escape_char,
        Some(Some(b'%'))
    );
    let error = parse("EscapeChar ab\n", "h").unwrap_err().to_string();
    assert!(error.contains("Bad escape character 'ab'."), "{error}");
}

#[test]
fn quic_liveness_defaults_and_overrides() {
    use sshq_quic::tls::Liveness;
    assert_eq!(parse("", "h").unwrap().quic_liveness(), Liveness::CLIENT);
    let o = parse("QuicIdleTimeout 0\nQuicKeepAlive 500ms\n", "h").unwrap();
    let liveness = o.quic_liveness();
    assert_eq!(liveness.idle_timeout, None);
    assert_eq!(liveness.keep_alive, Some(Duration::from_millis(500)));
    let o = parse("QuicIdleTimeout 2h\n", "h").unwrap();
    assert_eq!(
        o.quic_liveness().idle_timeout,
        Some(Duration::from_secs(7200))
    );
    assert_eq!(o.quic_liveness().keep_alive, Liveness::CLIENT.keep_alive);
    let error = parse("QuicKeepAlive soon\n", "h").unwrap_err().to_string();
    assert!(error.contains("invalid time value."), "{error}");
}

#[test]
fn line_syntax() {
    let text = "# comment\n\n  port=1\nUSER = bob # trailing comment\n\"HostName\" \"a b\"\r\n\
        \tIdentityFile '/x y'\nProxyJump a#b\nSendEnv \"A\"B C\\ D\n";
    let o = parse(text, "h").unwrap();
    assert_eq!((o.port, o.user.as_deref()), (Some(1), Some("bob")));
    assert_eq!(o.host_name.as_deref(), Some("a b"));
    assert_eq!(o.identity_files, [PathBuf::from("/x y")]);
    assert_eq!(o.proxy_jump.as_deref(), Some("a#b"));
    assert_eq!(o.send_env, ["AB", "C D"]);
    let split = split_line("Port==5").unwrap().unwrap();
    assert_eq!(split, ("Port".to_string(), vec!["=5".to_string()]));
    assert_eq!(split_line("   # x"), Ok(None));
    assert_eq!(split_line("HostName \"abc"), Err("invalid quotes"));
}

#[test]
fn first_value_wins_and_command_line_comes_first() {
    let mut o = ClientOptions::default();
    for option in ["Port=1", "Port 7", "IdentityFile=/cli", "SendEnv=A"] {
        o.apply_option_str(option).unwrap();
    }
    let text = "Port 2\nUser x\nUser y\nIdentityFile /file\nSendEnv B\nSetEnv X=1\nSetEnv Y=2\n";
    parse_with(&mut o, text, "h").unwrap();
    assert_eq!((o.port, o.user.as_deref()), (Some(1), Some("x")));
    assert_eq!(
        o.identity_files,
        [PathBuf::from("/cli"), PathBuf::from("/file")]
    );
    assert_eq!(o.send_env, ["A", "B"]);
    assert_eq!(o.set_env, Some(vec![pair("X", "1")]));
}

#[test]
fn host_patterns() {
    let cases = [
        ("*.example.com !bad.example.com", "good.example.com", true),
        ("*.example.com !bad.example.com", "bad.example.com", false),
        ("!bad.example.com *.example.com", "bad.example.com", false),
        ("!foo", "bar", false),
        ("f?o", "fxo", true),
        ("f?o", "fo", false),
        ("one two", "two", true),
        ("foo,bar", "foo", false),
        ("FOO", "foo", false),
        ("*", "anything", true),
    ];
    for (patterns, host, hit) in cases {
        let text = format!("Host {patterns}\n  Port 1\nHost *\n  Port 2\n");
        let want = Some(if hit { 1 } else { 2 });
        assert_eq!(
            parse(&text, host).unwrap().port,
            want,
            "Host {patterns} vs {host}"
        );
    }
}

#[test]
fn match_blocks() {
    let port = |text: &str, host: &str| parse(text, host).unwrap().port;
    assert_eq!(port("Match all\n Port 1\n", "h"), Some(1));
    assert_eq!(port("Match !all\n Port 1\n", "h"), None);
    assert_eq!(
        port("HostName real\nMatch host REAL\n Port 1\n", "h"),
        Some(1)
    );
    assert_eq!(port("Match host x,!y\n Port 1\n", "y"), None);
    assert_eq!(
        port("Match !host foo originalhost b*\n Port 1\n", "bar"),
        Some(1)
    );
    assert_eq!(port("User bob\nMatch user bob\n Port 1\n", "h"), Some(1));
    let localuser = format!("Match localuser {}\n Port 1\n", local_user());
    assert_eq!(port(&localuser, "h"), Some(1));
    assert_eq!(
        port("Match canonical\n Port 1\nMatch final\n Port 2\n", "h"),
        Some(2)
    );
    let exec = "F line 2: unsupported Match criterion \"exec\" (sshq supports all, canonical, \
        final, host, originalhost, user, localuser)\nF: terminating, 1 bad configuration options";
    assert_eq!(err("Port 1\nMatch exec \"true\"\n"), exec);
    let all = "F line 1: 'all' cannot be combined with other Match attributes\n";
    assert!(err("Match all host x\n").starts_with(all));
    let missing = "F line 1: Missing Match criteria for host\n";
    assert!(err("Match host\n").starts_with(missing));
}

#[test]
fn unknown_keywords_report_file_and_line() {
    let one = "F: line 4: Bad configuration option: foo\n\
        F: terminating, 1 bad configuration options";
    assert_eq!(err("Host foo\n  Port 2222\n\nFoo bar\n"), one);
    let four = "F: line 1: Bad configuration option: foo\nF line 2: Bad port 'abc'.\n\
        F: line 4: Bad configuration option: bar\nF line 5: unsupported option \"x\".\n\
        F: terminating, 4 bad configuration options";
    assert_eq!(
        err("Foo bar\nPort abc\nHost other\n  Bar 1\nBatchMode x\n"),
        four
    );
    let unknown = "command-line: line 0: Bad configuration option: foo";
    assert_eq!(cli_err("Foo=bar"), unknown);
    assert_eq!(cli_err("Port abc"), "command-line line 0: Bad port 'abc'.");
    let host = "command-line line 0: Host directive not supported as a command-line option";
    assert_eq!(cli_err("Host=x"), host);
}

#[test]
fn ignore_unknown() {
    assert!(parse("IgnoreUnknown Fo*,bar\nfoo 1\nBAR 2\n", "h").is_ok());
    let late = "F: line 1: Bad configuration option: bar\n\
        F: terminating, 1 bad configuration options";
    assert_eq!(err("Bar 1\nIgnoreUnknown bar\n"), late);
    let mut o = ClientOptions::default();
    o.apply_option_str("IgnoreUnknown=usekeychain").unwrap();
    assert!(parse_with(&mut o, "UseKeychain yes\n", "h").is_ok());
}

#[test]
fn bad_values() {
    let cases = [
        ("Port abc", "Bad port 'abc'."),
        ("Port 0", "Bad port '0'."),
        ("Port 22 33", "keyword port extra arguments at end of line"),
        ("IdentityFile", "no argument after keyword \"identityfile\""),
        ("BatchMode maybe", "unsupported option \"maybe\"."),
        (
            "StrictHostKeyChecking maybe",
            "unsupported option \"maybe\".",
        ),
        ("RequestTTY sometimes", "unsupported option \"sometimes\"."),
        ("Transport udp", "unsupported option \"udp\"."),
        ("CongestionControl vegas", "unsupported option \"vegas\"."),
        ("ConnectTimeout 5x", "invalid time value."),
        ("QuicFallbackTimeout soon", "invalid time value."),
        ("LogLevel loud", "unsupported log level 'loud'"),
        ("ServerAliveCountMax -1", "integer value too small."),
        ("ServerAliveCountMax x", "integer value invalid."),
        ("NumberOfPasswordPrompts -1", "integer value too small."),
        (
            "NumberOfPasswordPrompts 2147483648",
            "integer value too large.",
        ),
        ("NumberOfPasswordPrompts three", "integer value invalid."),
        (
            "PubkeyAuthentication maybe",
            "unsupported option \"maybe\".",
        ),
        (
            "PasswordAuthentication unbound",
            "unsupported option \"unbound\".",
        ),
        (
            "KbdInteractiveAuthentication 1",
            "unsupported option \"1\".",
        ),
        (
            "PreferredAuthentications password publickey",
            "keyword preferredauthentications extra arguments at end of line",
        ),
        ("LocalForward 8080", "Missing target argument."),
        ("StreamLocalBindMask 0800", "Invalid StreamLocalBindMask."),
        ("StreamLocalBindMask 8", "Invalid StreamLocalBindMask."),
        (
            "ExitOnForwardFailure maybe",
            "unsupported option \"maybe\".",
        ),
        (
            "DynamicForward 1080 x",
            "keyword dynamicforward extra arguments at end of line",
        ),
        ("SetEnv A", "Invalid SetEnv."),
        ("SendEnv A=B", "Invalid environment name."),
        ("HostName \"abc", "invalid quotes"),
        (
            "ForwardAgent sock",
            "ForwardAgent \"sock\": expected yes, no, a path or $VARIABLE",
        ),
    ];
    for (line, message) in cases {
        // Values are checked even in blocks that do not apply, as OpenSSH does.
        let want = format!("F line 2: {message}\nF: terminating, 1 bad configuration options");
        assert_eq!(err(&format!("Host nomatch\n{line}\n")), want, "{line}");
    }
}

#[test]
fn keywords_sshq_ignores_or_refuses() {
    let text = "HashKnownHosts yes\nGSSAPIAuthentication yes\nForwardX11 yes\nCiphers aes128-ctr\n";
    assert_eq!(
        parse(text, "h").map_err(|e| e.to_string()),
        Ok(ClientOptions::default())
    );
    let refused = "F line 1: keyword remotecommand is not supported by sshq (list it in \
        IgnoreUnknown to skip it)\nF: terminating, 1 bad configuration options";
    assert_eq!(err("RemoteCommand uptime\n"), refused);
    let elsewhere = "Host other\n  RemoteCommand uptime\nHost *\n  RemoteCommand none\n\
        IdentityAgent SSH_AUTH_SOCK\n";
    assert!(parse(elsewhere, "h").is_ok());
    assert!(parse("IgnoreUnknown RemoteCommand\nRemoteCommand uptime\n", "h").is_ok());
    assert!(err("IdentityAgent none\n").contains("keyword identityagent is not supported"));
}

#[test]
fn includes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let write = |name: &str, text: &str| std::fs::write(format!("{d}/{name}"), text).unwrap();
    std::fs::create_dir(format!("{d}/conf.d")).unwrap();
    write("conf.d/b.conf", "User from-b\nPort 2\n");
    write("conf.d/a.conf", "Host other\n  User from-a\n");
    write("conf.d/.hidden.conf", "Port 9\n");
    write("skipped", "User from-skipped-block\n");
    let text =
        format!("Host x\n Include {d}/skipped\nHost *\n Include {d}/conf.d/*.conf\n Port 3\n");
    write("config", &text);
    let main = PathBuf::from(format!("{d}/config"));
    let load = || {
        ClientOptions::default()
            .apply_file(&main, "h")
            .map_err(|e| e.to_string())
    };
    let mut o = ClientOptions::default();
    o.apply_file(&main, "h").unwrap();
    // a.conf's `Host other` does not leak: b.conf and the Port after the Include apply.
    assert_eq!((o.user.as_deref(), o.port), (Some("from-b"), Some(2)));
    // Errors inside an included file name that file.
    write("conf.d/b.conf", "Bogus 1\n");
    let b = format!("{d}/conf.d/b.conf");
    let bogus = format!("{b}: line 1: Bad configuration option: bogus\n");
    assert_eq!(
        load(),
        Err(format!(
            "{bogus}{b}: terminating, 1 bad configuration options"
        ))
    );
    // Files others may write are refused, as OpenSSH does.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(load(), Err(format!("Bad owner or permissions on {b}")));
    // An include loop stops at the depth limit.
    write("config", &format!("Include {d}/config\n"));
    assert!(load()
        .unwrap_err()
        .contains("Too many recursive configuration includes"));
    let missing = ClientOptions::default().apply_file(Path::new(&format!("{d}/nope")), "h");
    let text = format!("Can't open user config file {d}/nope: No such file or directory");
    assert_eq!(missing.unwrap_err().to_string(), text);
}

#[test]
fn the_real_system_config_parses() {
    let system = Path::new(SYSTEM_CONFIG_PATH);
    if system.exists() {
        let mut o = ClientOptions::default();
        let mut scope = Scope::top("example.com", Origin::System);
        o.read_file(system, &mut scope, false).unwrap();
        assert!(ClientOptions::default()
            .load_files(Some(system), "example.com")
            .is_ok());
    }
}

#[test]
fn small_parsers() {
    let ms = |s| parse_duration(s).map(|d| d.as_millis() as u64);
    let good = [("0", 0), ("30", 30_000), ("30s", 30_000), ("2m", 120_000)];
    let more = [
        ("1h30m", 5_400_000),
        ("1H30", 3_630_000),
        ("1w", 604_800_000),
        ("250ms", 250),
    ];
    for (text, want) in good.into_iter().chain(more) {
        assert_eq!(ms(text), Some(want), "{text}");
    }
    for text in ["", "x", "5x", "m", "-1", "99999999999999999999"] {
        assert_eq!(ms(text), None, "{text}");
    }
    let ports = ["22", "65535", "0", "+22", "65536", ""].map(parse_port);
    assert_eq!(ports, [Some(22), Some(65535), None, None, None, None]);
    let home = home_dir().unwrap();
    assert_eq!(
        (expand_tilde("~"), expand_tilde("~/x")),
        (home.clone(), home.join("x"))
    );
    assert_eq!(expand_tilde("/a/~"), PathBuf::from("/a/~"));
    assert_eq!(expand_tilde("~root/x"), PathBuf::from("/root/x"));
    let o = ClientOptions {
        host_name: Some("%h.lan%%h".into()),
        ..Default::default()
    };
    assert_eq!(o.expanded_host_name("box"), "box.lan%h");
    assert_eq!(ClientOptions::default().expanded_host_name("box"), "box");
    assert_eq!(
        LogLevel::parse("debug").map(LogLevel::as_str),
        Some("DEBUG")
    );
}

#[test]
fn proxy_command_takes_the_rest_of_the_line_and_competes_with_proxy_jump() {
    let o = parse(
        "ProxyCommand sh -c \"nc %h %p\" # not a comment\nProxyJump j\n",
        "h",
    )
    .unwrap();
    assert_eq!(
        o.proxy_command.as_deref(),
        Some("sh -c \"nc %h %p\" # not a comment")
    );
    assert_eq!(o.proxy_jump, None, "the first of the two wins");
    let o = parse("ProxyJump j\nProxyCommand nc %h %p\n", "h").unwrap();
    assert_eq!(
        (o.proxy_jump.as_deref(), o.proxy_command),
        (Some("j"), None)
    );
    let mut o = ClientOptions::default();
    o.apply_option_str("ProxyCommand=ssh -W %h:%p gw").unwrap();
    assert_eq!(o.proxy_command.as_deref(), Some("ssh -W %h:%p gw"));
    assert!(err("ProxyCommand\n").contains("no argument after keyword \"proxycommand\""));
}

#[test]
fn clear_all_forwardings() {
    let o = parse("ClearAllForwardings yes\n", "h").unwrap();
    assert_eq!(o.clear_all_forwardings, Some(true));
    assert!(err("ClearAllForwardings maybe\n").contains("maybe"));
}

#[test]
fn text_from_memory_reads_as_the_file_does() {
    let good = "Host other\n  Port 1\nHost h\n  Port 2222\n  User bob\n";
    let mut from_memory = ClientOptions::default();
    from_memory.apply_str("F", good, "h").unwrap();
    assert_eq!(from_memory, parse(good, "h").unwrap());
    assert_eq!(from_memory.port, Some(2222));
    let bad = "Port 22\nPort x\nFrobnicate 1\n";
    let mut o = ClientOptions::default();
    assert_eq!(
        o.apply_str("F", bad, "h").unwrap_err().to_string(),
        err(bad)
    );
}

#[test]
fn authentication_options_first_value_wins() {
    // -o first, then the files; Host blocks as for every option.
    let mut o = ClientOptions::default();
    o.apply_option_str("PasswordAuthentication=no").unwrap();
    o.apply_option_str("NumberOfPasswordPrompts 1").unwrap();
    let text = "Host other\n  PreferredAuthentications password\n  BatchMode yes\n\
        Host h\n  PasswordAuthentication yes\n  PreferredAuthentications keyboard-interactive,gssapi-with-mic\n\
        Host *\n  PreferredAuthentications publickey\n  NumberOfPasswordPrompts 7\n  \
        ChallengeResponseAuthentication no\n  KbdInteractiveAuthentication yes\n  PubkeyAuthentication no\n";
    parse_with(&mut o, text, "h").unwrap();
    assert_eq!(o.password_authentication, Some(false));
    assert_eq!(o.number_of_password_prompts, Some(1));
    // Names sshq does not speak are kept as written (they never match).
    assert_eq!(
        o.preferred_authentications.as_deref(),
        Some("keyboard-interactive,gssapi-with-mic")
    );
    // ChallengeResponseAuthentication is the same option, set first.
    assert_eq!(o.kbd_interactive_authentication, Some(false));
    assert_eq!(o.pubkey_authentication, Some(false));
    assert_eq!(o.batch_mode, None);
}

#[test]
fn authentication_option_spellings() {
    for (line, pubkey) in [
        ("PubkeyAuthentication yes", true),
        ("PubkeyAuthentication TRUE", true),
        ("PubkeyAuthentication unbound", true),
        ("PubkeyAuthentication host-bound", true),
        ("PubkeyAuthentication no", false),
        ("DSAAuthentication false", false),
    ] {
        let o = parse(&format!("{line}\n"), "h").unwrap();
        assert_eq!(o.pubkey_authentication, Some(pubkey), "{line}");
    }
    for alias in [
        "KbdInteractiveAuthentication",
        "ChallengeResponseAuthentication",
        "SKeyAuthentication",
        "TISAuthentication",
    ] {
        let o = parse(&format!("{alias} no\n"), "h").unwrap();
        assert_eq!(o.kbd_interactive_authentication, Some(false), "{alias}");
    }
    let o = parse(
        "NumberOfPasswordPrompts 0\nKbdInteractiveDevices pam,bsdauth\n",
        "h",
    )
    .unwrap();
    assert_eq!(o.number_of_password_prompts, Some(0));
    // Nothing set: the caller's defaults apply.
    let o = parse("\n", "h").unwrap();
    assert_eq!(o.preferred_authentications, None);
    assert_eq!(o.number_of_password_prompts, None);
}
