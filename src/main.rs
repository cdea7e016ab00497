use std::process::ExitCode;

use clap::Parser;
use egress_guard::cli::{Cli, Command};

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    egress_guard::install_crypto_provider();
    let cli = Cli::parse();
    let log_guard = egress_guard::init_tracing(cli.log_format, &cli.log_level);
    let result = match cli.command {
        Command::Check(args) => return ExitCode::from(egress_guard::check::run(&args)),
        Command::Certs(args) => egress_guard::certs::run(&args),
        Command::Schema(args) => print(&if args.kinds {
            egress_guard::policy::kind::table_json()
        } else {
            egress_guard::policy::allowlist::schema_json()
        }),
        Command::Serve(args) => runtime().and_then(|rt| {
            let result = rt.block_on(egress_guard::server::run(*args));
            // A review still running past its deadline must not hold the exit: the
            // server already answered it and stopped.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            result
        }),
        Command::Preflight(args) => match runtime()
            .and_then(|rt| rt.block_on(egress_guard::registration::preflight::run(&args)))
        {
            Ok(code) => return ExitCode::from(code),
            Err(e) => Err(e),
        },
        Command::Uninstall(args) => {
            runtime().and_then(|rt| rt.block_on(egress_guard::registration::uninstall_cli(&args)))
        }
        Command::Grants(args) => {
            match runtime().and_then(|rt| rt.block_on(egress_guard::grants::run(&args))) {
                Ok(code) => return ExitCode::from(code),
                Err(e) => Err(e),
            }
        }
        Command::Audit(args) => {
            match runtime().and_then(|rt| rt.block_on(egress_guard::audit::run(&args))) {
                Ok(code) => return ExitCode::from(code),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The log lines that led here come first.
            if let Some(g) = &log_guard {
                g.flush();
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Writes a document to stdout; a reader that stops early (`| head`) is no error.
fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
