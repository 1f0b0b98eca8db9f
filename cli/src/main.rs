//! The `steward` binary: a thin `main` over [`cli::main`].

/// mimalloc instead of the system allocator: sled allocates and frees node copies on every
/// write, and glibc's allocator both spent a third of a bulk import's time on them and kept
/// the freed memory (BENCHMARKS.md, "Imports").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
