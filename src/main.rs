use std::process::ExitCode;

use clap::Parser;
use egress_guard::cli::{Cli, Command};

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Check(args) => ExitCode::from(egress_guard::check::run(args)),
        _ => {
            eprintln!("not yet");
            ExitCode::from(2)
        }
    }
}
