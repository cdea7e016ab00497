//! Writes a synthetic allowlist to stdout for the load, reload and soak scripts.
//!
//! `cargo run --release --example gen-allowlist -- 100000 [--without-github] [--tag N]`
//!
//! The document is the one `benches/engine.rs` measures (see `allowlist_gen.rs`): it
//! allows what the `*-github-api` admission fixtures use (unless `--without-github`)
//! and nothing the `*-exfil` fixtures use.

use std::io::Write as _;
use std::process::ExitCode;

mod allowlist_gen;

fn main() -> ExitCode {
    let mut spec = allowlist_gen::Spec::new(100_000);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--without-github" => spec.without_github = true,
            "--tag" => match args.next().and_then(|t| t.parse().ok()) {
                Some(t) => spec.tag = t,
                None => return usage("--tag needs a number"),
            },
            n => match n.replace('_', "").parse::<usize>() {
                Ok(n) if n >= allowlist_gen::CORE_ENTRIES => spec.entries = n,
                _ => return usage(&format!("unexpected argument {n:?}")),
            },
        }
    }
    let text = allowlist_gen::yaml(&spec);
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn usage(why: &str) -> ExitCode {
    eprintln!(
        "gen-allowlist: {why}\nusage: gen-allowlist [ENTRIES (>= {})] [--without-github] [--tag N]",
        allowlist_gen::CORE_ENTRIES
    );
    ExitCode::from(2)
}
