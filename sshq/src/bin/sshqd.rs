//! `sshqd`: the server. See `sshq::server`.

fn main() {
    // umask 022, and nothing inherited leaks into sessions.
    sshq::server::startup::harden_process();
    let args: Vec<String> = std::env::args().collect();
    // sshqd runs itself as the holder of one reattachable session.
    if args.get(1).map(String::as_str) == Some(sshq::server::reattach::holder::HOLDER_ARG) {
        std::process::exit(sshq::server::reattach::holder::run());
    }
    // sshqd runs itself as the PAM session helper of one session program
    // (UsePAM yes): before clap, which must not see its arguments.
    if args.get(1).map(String::as_str) == Some(sshq::server::pam_session::HELPER_ARG) {
        std::process::exit(sshq::server::pam_session::run_helper(&args));
    }
    // sshqd runs itself as the internal-sftp server of one session.
    if args.get(1).map(String::as_str) == Some(sshq::server::sftp::HELPER_ARG) {
        std::process::exit(sshq::server::sftp::run_helper(&args));
    }
    let (cli, config, host_keys) = match sshq::server::prepare(args.clone()) {
        Ok(prepared) => prepared,
        Err(error) => {
            let message = error.to_string();
            eprint!("{message}");
            if !message.ends_with('\n') {
                eprintln!();
            }
            std::process::exit(error.exit_code());
        }
    };
    if cli.test {
        std::process::exit(0);
    }
    sshq::server::init_logging(&cli, &config);
    // Like sshd: detach unless told to stay (-D, -d). Forking must happen
    // before any thread exists, so before the runtime starts.
    if !cli.foreground && cli.debug == 0 {
        if let Err(e) = nix::unistd::daemon(false, cli.log_stderr) {
            eprintln!("sshqd: cannot detach: {e}");
            std::process::exit(1);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sshqd: cannot start: {e}");
            std::process::exit(1);
        }
    };
    if let Err(message) = runtime.block_on(sshq::server::serve(config, host_keys, args)) {
        eprintln!("{message}");
        std::process::exit(1);
    }
}
