//! `sshq`: the client. See `sshq::client`.

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sshq: cannot start: {e}");
            std::process::exit(sshq::client::EXIT_FAILURE);
        }
    };
    let args: Vec<String> = std::env::args().collect();
    // `sshq proxy ...` is OpenSSH's ProxyCommand over QUIC, `sshq cp ...`
    // is scp over SFTP; hosts named "proxy" or "cp" are still reached as
    // `sshq -- proxy` or `sshq ssh://cp`.
    let code = match args.get(1).map(String::as_str) {
        Some("proxy") => runtime.block_on(sshq::client::proxy::main(args)),
        Some("cp") => runtime.block_on(sshq::client::cp::main(args)),
        _ => runtime.block_on(sshq::client::main(args)),
    };
    // Exit without waiting for the runtime: a blocking read of stdin may
    // still be pending and must not hold the exit.
    std::process::exit(code);
}
