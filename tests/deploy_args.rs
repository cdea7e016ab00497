//! The Deployment's container args must be flags the binary really has: parse them with
//! the same clap definition `main` uses.

use clap::Parser;
use egress_guard::cli::{Cli, Command};
use serde_json::Value;

/// A Deployment's container and its command line (`egress-guard` and the args) as the
/// kubelet runs it in a pod of namespace `pod_namespace`: `$(VAR)` in the args becomes
/// the container's env value, a fieldRef to `metadata.namespace` the pod's namespace.
fn container_argv(path: &str, pod_namespace: &str) -> (Value, Vec<String>) {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    let deployment: Value =
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let container = deployment["spec"]["template"]["spec"]["containers"][0].clone();
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.namespace") => pod_namespace.to_owned(),
                _ => e["value"].as_str()?.to_owned(),
            };
            Some((e["name"].as_str()?.to_owned(), value))
        })
        .collect();
    let mut argv = vec!["egress-guard".to_owned()];
    argv.extend(
        container["args"]
            .as_array()
            .expect("container args")
            .iter()
            .map(|a| {
                env.iter()
                    .fold(a.as_str().unwrap().to_owned(), |a, (k, v)| {
                        a.replace(&format!("$({k})"), v)
                    })
            }),
    );
    (container, argv)
}

#[test]
fn deployment_args_parse_as_a_serve_command() {
    let (_, argv) = container_argv("deploy/base/deployment.yaml", "egress-guard");
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let Command::Serve(args) = cli.command else {
        panic!("the Deployment must run `serve`");
    };
    assert!(
        args.tls_cert.is_some() && args.tls_key.is_some(),
        "in-cluster TLS comes from the mounted secret"
    );
    let cm = args
        .allowlist
        .allowlist_configmap
        .expect("the allowlist comes from the ConfigMap");
    assert_eq!(cm.to_string(), "egress-guard/egress-guard-allowlist");
    assert_eq!(args.listen.port(), 8443);
    assert_eq!(args.metrics_listen.port(), 9090);
}

#[test]
fn the_auditor_args_parse_as_audit_watch_on_the_base_allowlist() {
    let (container, argv) = container_argv("deploy/audit-watch/deployment.yaml", "egress-guard");
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let Command::Audit(args) = cli.command else {
        panic!("the auditor must run `audit`");
    };
    assert!(args.watch.watch, "{argv:?}");
    assert_eq!(
        args.allowlist_configmap.map(|c| c.to_string()).as_deref(),
        Some("egress-guard/egress-guard-allowlist")
    );
    assert_eq!(args.namespace, None, "every namespace");
    assert_eq!(
        Some(i64::from(args.watch.metrics_listen.port())),
        container["ports"][0]["containerPort"].as_i64()
    );
}

#[test]
fn both_deployments_read_the_allowlist_in_their_own_namespace() {
    for path in [
        "deploy/base/deployment.yaml",
        "deploy/audit-watch/deployment.yaml",
    ] {
        let (_, argv) = container_argv(path, "platform-egress");
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let configmap = match cli.command {
            Command::Serve(args) => {
                // The server's namespace comes from POD_NAMESPACE, never from a flag
                // that would stay behind when the install moves.
                assert!(
                    !argv.iter().any(|a| a.starts_with("--namespace")),
                    "{argv:?}"
                );
                args.allowlist.allowlist_configmap
            }
            Command::Audit(args) => args.allowlist_configmap,
            _ => panic!("{path}: neither serve nor audit"),
        };
        assert_eq!(
            configmap.map(|c| c.to_string()).as_deref(),
            Some("platform-egress/egress-guard-allowlist"),
            "{path}"
        );
    }
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `egress-guard:<version>` tag written in `text` (a digit after the colon).
fn tags(text: &str) -> Vec<&str> {
    text.match_indices("egress-guard:")
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches('.')
        })
        .filter(|t| t.starts_with(|c: char| c.is_ascii_digit()))
        .collect()
}

#[test]
fn the_image_tag_is_the_crate_version_everywhere() {
    let version = env!("CARGO_PKG_VERSION");
    for path in [
        "deploy/base/deployment.yaml",
        "deploy/audit-watch/deployment.yaml",
    ] {
        let (container, _) = container_argv(path, "egress-guard");
        assert_eq!(
            container["image"],
            format!("egress-guard:{version}"),
            "{path}"
        );
    }
    let overlay: Value =
        serde_norway::from_str(&repo_file("deploy/overlays/registry/kustomization.yaml")).unwrap();
    assert_eq!(overlay["images"][0]["name"], "egress-guard");
    assert_eq!(overlay["images"][0]["newTag"], version);

    let dockerfile = repo_file("Dockerfile");
    assert!(
        dockerfile.contains(&format!("docker build -t egress-guard:{version} ."))
            && dockerfile.contains(&format!("org.opencontainers.image.version=\"{version}\"")),
        "the Dockerfile's build command and label name {version}"
    );
    let readme = repo_file("README.md");
    assert!(readme.contains(&format!(
        "docker build -t REGISTRY/egress-guard:{version} ."
    )));
    let deploy_md = repo_file("docs/deploy.md");
    assert!(deploy_md.contains(&format!(
        "docker build -t registry.example.com/platform/egress-guard:{version} ."
    )));
    // No other version is written down as a tag anywhere the image is named.
    for (path, text) in [
        ("Dockerfile", dockerfile.as_str()),
        ("README.md", readme.as_str()),
        ("docs/deploy.md", deploy_md.as_str()),
        (
            "deploy/base/kustomization.yaml",
            &repo_file("deploy/base/kustomization.yaml"),
        ),
        (
            "deploy/overlays/registry/kustomization.yaml",
            &repo_file("deploy/overlays/registry/kustomization.yaml"),
        ),
    ] {
        let other: Vec<&str> = tags(text).into_iter().filter(|t| *t != version).collect();
        assert!(
            other.is_empty(),
            "{path} names egress-guard:{other:?}, not {version}"
        );
    }
    assert!(
        repo_file("CHANGELOG.md").contains(&format!("\n## [{version}] - ")),
        "CHANGELOG.md has a section for {version}"
    );
}

#[test]
fn an_unexpanded_pod_namespace_is_refused_with_its_reason() {
    // As the kubelet would leave the args if the env lost POD_NAMESPACE.
    let (container, _) = container_argv("deploy/base/deployment.yaml", "egress-guard");
    let argv = std::iter::once("egress-guard").chain(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap()),
    );
    let e = Cli::try_parse_from(argv).unwrap_err().to_string();
    assert!(e.contains("$(POD_NAMESPACE) was not expanded"), "{e}");
}
