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
    let code = runtime.block_on(sshq::client::main(std::env::args().collect()));
    // Exit without waiting for the runtime: a blocking read of stdin may
    // still be pending and must not hold the exit.
    std::process::exit(code);
}
