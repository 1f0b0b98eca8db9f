//! The `steward` binary: a thin `main` over [`cli::run`].

fn main() -> std::process::ExitCode {
    cli::main()
}
