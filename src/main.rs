//! The `fxhook` binary: parses the command line and hands over to the library.

use clap::Parser;

/// jemalloc instead of the system allocator: memory stays flat under steady load (see the
/// dependency's note in Cargo.toml and bench/soak).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    fxhook::cli::run(fxhook::cli::Cli::parse())
}
