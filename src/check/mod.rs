//! `egress-guard check`: evaluate manifests offline with the same `policy::evaluate`
//! the webhook uses, and print verdicts, violations, warnings and the would-be patch;
//! with `--against OLD`, what changing the allowlist from OLD does to them.
//!
//! Exit codes: 0 every object allowed (or nothing newly denied), 1 at least one denied
//! (newly denied), 2 usage or input error.

use clap::Args;
use std::path::{Path, PathBuf};

use crate::args::{JudgeArgs, OutputFormat};
use crate::policy::{self, Allowlist, AllowlistSource, Decision, Env, Kind, Operation, Request};

mod diff;
mod manifest;
mod report;

pub use diff::{Change, DiffReport};
pub use manifest::{InputError, Manifest, parse_manifests, read_path};
pub use report::{ObjectReport, Report, Summary};

/// Exit code: every object allowed.
pub const EXIT_ALLOWED: u8 = 0;
/// Exit code: at least one object denied.
pub const EXIT_DENIED: u8 = 1;
/// Exit code: usage or input error.
pub const EXIT_INPUT_ERROR: u8 = 2;

/// How manifests are judged: what the webhook would know at their admission.
#[derive(Debug, Clone)]
pub struct Judge {
    /// The time entries expire against.
    pub now: i64,
    /// Name the granting entries.
    pub explain: bool,
    /// The allowlist's own ConfigMap.
    pub source: AllowlistSource,
}

impl Judge {
    /// From the flags, with the wall clock unless `--now` is given.
    pub fn new(args: &JudgeArgs, key: &str) -> Self {
        Self {
            now: args.now.map_or_else(crate::unix_now, |n| n.0),
            explain: args.explain,
            source: AllowlistSource {
                configmap: args.validate_configmap.clone(),
                key: key.to_owned(),
            },
        }
    }

    /// Evaluates one manifest as a CREATE.
    pub fn evaluate(&self, m: &Manifest, allowlist: &Allowlist) -> Decision {
        let req = Request {
            kind: Kind::from_api_version(&m.api_version, &m.kind),
            operation: Operation::Create,
            namespace: &m.namespace,
            name: &m.name,
            object: Some(&m.object),
            old_object: None,
            user: "",
            subresource: "",
        };
        let env = Env {
            now: Some(self.now),
            explain: self.explain,
            allowlist_source: Some(&self.source),
            ..Env::default()
        };
        policy::evaluate(&req, allowlist, &env)
    }
}

/// Loads the allowlist from a file, or the embedded example.
pub fn load_allowlist(path: Option<&Path>) -> anyhow::Result<Allowlist> {
    use anyhow::Context as _;
    match path {
        None => Ok(Allowlist::from_yaml(policy::allowlist::EXAMPLE)?),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading allowlist {}", p.display()))?;
            Allowlist::from_yaml(&text).with_context(|| format!("allowlist {}", p.display()))
        }
    }
}

/// Runs `check`; returns the exit code.
pub fn run(args: &CheckArgs) -> u8 {
    let CheckArgs {
        allowlist,
        against,
        allowlist_key,
        judge,
        output,
        namespace,
        paths,
    } = args;
    let judge = Judge::new(judge, allowlist_key);
    let allowlist = match load_allowlist(allowlist.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return EXIT_INPUT_ERROR;
        }
    };
    for w in &allowlist.warnings {
        eprintln!("warning: allowlist: {w}");
    }
    let old = match against
        .as_deref()
        .map(|p| load_allowlist(Some(p)))
        .transpose()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return EXIT_INPUT_ERROR;
        }
    };
    let mut manifests = Vec::new();
    let mut failed = false;
    for path in paths {
        match read_path(path, namespace) {
            Ok(mut ms) => manifests.append(&mut ms),
            Err(errors) => {
                failed = true;
                for e in errors {
                    eprintln!("error: {e}");
                }
            }
        }
    }
    let code = match old {
        Some(old) => {
            let diff = DiffReport::new(
                manifests
                    .iter()
                    .map(|m| (m, judge.evaluate(m, &old), judge.evaluate(m, &allowlist))),
            );
            print!("{}", diff.render(*output));
            diff.exit_code()
        }
        None => {
            let objects = manifests
                .iter()
                .map(|m| ObjectReport::new(m, &judge.evaluate(m, &allowlist)))
                .collect();
            let report = Report::new(objects);
            print!("{}", report.render(*output));
            report.exit_code()
        }
    };
    if failed { EXIT_INPUT_ERROR } else { code }
}

/// `check` flags.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Allowlist YAML file; the embedded example allowlist when omitted.
    #[arg(long)]
    pub allowlist: Option<PathBuf>,
    /// An older allowlist: report only the objects whose verdict or violations change
    /// between it and --allowlist (exit 1 when something becomes denied).
    #[arg(long, value_name = "OLD")]
    pub against: Option<PathBuf>,
    /// Key of the allowlist in the ConfigMap named by --validate-configmap.
    #[arg(long, default_value = "allowlist.yaml")]
    pub allowlist_key: String,
    /// Explain, time and allowlist ConfigMap.
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Namespace for objects that do not name one.
    #[arg(long, short, default_value = "default")]
    pub namespace: String,
    /// Manifest files or directories (YAML, multi-document, JSON, `List`); `-` reads stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}
