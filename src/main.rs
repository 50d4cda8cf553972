//! The `fxhook` binary: parses the command line and hands over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    fxhook::cli::run(fxhook::cli::Cli::parse())
}
