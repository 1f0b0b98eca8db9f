//! The `steward` binary: a thin `main` over [`cli::main`].

fn main() -> std::process::ExitCode {
    cli::main()
}
