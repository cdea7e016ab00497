//! `egress-guard check` as a user runs it: the built binary on the examples, stdin,
//! JSON output, and exit codes 0/1/2.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_egress-guard"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).current_dir(root()).output().unwrap()
}

fn run_stdin(args: &[&str], input: &str) -> Output {
    let mut child = bin()
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn allowed_examples_exit_zero() {
    let out = run(&["check", "examples/manifests/allowed"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("9 objects: 9 allowed, 0 denied"), "{text}");
}

#[test]
fn denied_examples_exit_one_with_codes_and_paths() {
    let out = run(&["check", "--output", "json", "examples/manifests/denied"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    let mut seen: Vec<(String, String, String)> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert_eq!(o["allowed"], false, "{o}");
            assert_eq!(o["verdict"], "deny", "{o}");
            let v = &o["violations"][0];
            (
                o["name"].as_str().unwrap().to_owned(),
                v["code"].as_str().unwrap().to_owned(),
                v["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let want = [
        ("all-of-aws", "EG102", "spec.hosts[0]"),
        (
            "batch-export",
            "EG304",
            "spec.template.metadata.labels[sidecar.istio.io/inject]",
        ),
        ("corporate-network-wide", "EG103", "spec.addresses[1]"),
        ("database", "EG104", "spec.hosts[0]"),
        ("default", "EG301", "spec.outboundTrafficPolicy.mode"),
        ("exfil", "EG101", "spec.hosts[0]"),
        ("github-ssh", "EG106", "spec.resolution"),
        ("partial", "EG202", "spec.hosts[0]"),
        ("partner", "EG101", "spec.externalName"),
        ("stripe", "EG105", "spec.hosts[0]"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(report["summary"]["denied"], 10);
}

#[test]
fn json_output_carries_the_mutate_patch() {
    let out = run(&[
        "check",
        "-o",
        "json",
        "examples/manifests/allowed/virtualservice-without-timeout.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let obj = &json(&out)["objects"][0];
    assert_eq!(obj["kind"], "VirtualService");
    assert_eq!(obj["namespace"], "default");
    assert_eq!(obj["name"], "github-api");
    assert_eq!(
        obj["patch"],
        serde_json::json!([{"op": "add", "path": "/spec/http/0/timeout", "value": "15s"}])
    );
    assert!(
        obj["warnings"][0]
            .as_str()
            .unwrap()
            .contains("spec.http[0]")
    );
    let ok = run(&[
        "check",
        "-o",
        "json",
        "examples/manifests/allowed/github-multi-port.yaml",
    ]);
    assert_eq!(json(&ok)["objects"][0]["patch"], Value::Null);
}

#[test]
fn reads_stdin_and_skips_other_kinds() {
    let input = "apiVersion: apps/v1\nkind: ControllerRevision\nmetadata: {name: web}\n---\napiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {name: gh}\nspec: {hosts: [api.github.com], resolution: DNS, ports: [{number: 443, name: https, protocol: TLS}]}\n";
    let out = run_stdin(&["check", "-o", "json", "-"], input);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(report["summary"]["skipped"], 1);
    assert_eq!(report["summary"]["allowed"], 1);
    assert_eq!(report["objects"][1]["namespace"], "default");
}

#[test]
fn custom_allowlist_changes_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let allowlist = dir.path().join("allow.yaml");
    std::fs::write(&allowlist, "hosts: [upload.evil.example.org]\n").unwrap();
    let out = run(&[
        "check",
        "--allowlist",
        allowlist.to_str().unwrap(),
        "examples/manifests/denied/exfiltration.yaml",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn check_shows_the_platforms_help_with_each_denial() {
    let dir = tempfile::tempdir().unwrap();
    let allowlist = dir.path().join("allow.yaml");
    std::fs::write(&allowlist, "help: \"ask #egress for {host} ({code})\"\n").unwrap();
    let path = allowlist.to_str().unwrap();
    let manifest = "examples/manifests/denied/exfiltration.yaml";
    let out = run(&["check", "--allowlist", path, manifest]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("      help: ask #egress for upload.evil.example.org (EG101)"),
        "{text}"
    );
    let out = run(&["check", "-o", "json", "--allowlist", path, manifest]);
    let report = json(&out);
    assert_eq!(
        report["objects"][0]["help"],
        "ask #egress for upload.evil.example.org (EG101)"
    );

    std::fs::write(&allowlist, "help: \"ask #egress for {hots}\"\n").unwrap();
    let out = run(&["check", "--allowlist", path, manifest]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown placeholder {hots}"), "{err}");
}

#[test]
fn input_errors_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let bad_allowlist = dir.path().join("bad.yaml");
    std::fs::write(
        &bad_allowlist,
        "hosts:\n  - ok.example.com\n  - \"bad host\"\n",
    )
    .unwrap();
    let out = run(&[
        "check",
        "--allowlist",
        bad_allowlist.to_str().unwrap(),
        "examples/manifests",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hosts[1]") && err.contains("line 3"), "{err}");

    let out = run(&["check", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does/not/exist.yaml"));

    let out = run_stdin(&["check", "-"], "kind: [unclosed\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<stdin>"));

    let out = run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "missing PATH is a usage error");
}

#[test]
fn a_yaml_alias_bomb_in_a_manifest_is_an_input_error_not_a_hang() {
    // Nine levels of ten aliases each would expand to a billion nodes.
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n",
    );
    for i in 1..9 {
        let p = i - 1;
        bomb.push_str(&format!(
            "  a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    let started = std::time::Instant::now();
    let out = run_stdin(&["check", "-"], &bomb);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Documents that are fine still parse as several, with their line on error.
    let two = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {type: ExternalName, externalName: x.evil.example}\n";
    let out = run_stdin(&["check", "-o", "json", "-"], two);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["objects"].as_array().unwrap().len(), 2);
}
