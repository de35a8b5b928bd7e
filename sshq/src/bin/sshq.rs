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
    // `sshq proxy ...` is OpenSSH's ProxyCommand over QUIC; a host named
    // "proxy" is still reached as `sshq -- proxy` or `sshq ssh://proxy`.
    let code = if args.get(1).map(String::as_str) == Some("proxy") {
        runtime.block_on(sshq::client::proxy::main(args))
    } else {
        runtime.block_on(sshq::client::main(args))
    };
    // Exit without waiting for the runtime: a blocking read of stdin may
    // still be pending and must not hold the exit.
    std::process::exit(code);
}
