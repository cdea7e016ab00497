//! The allowlist as platform teams live with it: validated when it is applied (the real
//! captured reviews of its ConfigMap), entries that expire, `--explain`, and the
//! blast radius of a change (`check --against`).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Options, TestServer, fixture, fixture_json};
use serde_json::{Value, json};

const DAY: i64 = 86_400;

fn date(offset_days: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(egress_guard::unix_now() + offset_days * DAY)
        .unwrap();
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// The captured review of the allowlist ConfigMap with another allowlist in it.
fn configmap_review(allowlist: &str) -> Vec<u8> {
    let mut review = fixture_json("validate-update-configmap-v1-egress-guard-allowlist");
    review["request"]["object"]["data"] = json!({ "allowlist.yaml": allowlist });
    serde_json::to_vec(&review).unwrap()
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_egress-guard"))
}

#[tokio::test]
async fn the_captured_allowlist_configmap_reviews_are_allowed() {
    let s = TestServer::start().await;
    for name in [
        "validate-create-configmap-v1-egress-guard-allowlist",
        "validate-update-configmap-v1-egress-guard-allowlist",
    ] {
        let r = s.review("/validate", fixture(name)).await;
        assert_eq!(r["response"]["allowed"], true, "{name}: {r}");
        assert!(r["response"]["warnings"].is_null(), "{name}: {r}");
    }
}

#[tokio::test]
async fn a_bad_allowlist_is_refused_at_apply_with_the_message_check_prints() {
    let s = TestServer::start().await;
    let bad = "hosts:\n  - api.github.com\n  - \"-bad.example.com\"\n";
    let r = s.review("/validate", configmap_review(bad)).await;
    let resp = &r["response"];
    assert_eq!(resp["allowed"], false, "{r}");
    assert_eq!(resp["status"]["code"], 403);
    let message = resp["status"]["message"].as_str().unwrap();
    assert!(message.contains("EG120 data[allowlist.yaml]"), "{message}");

    // The same document as a file: `check` refuses it with the same field and line.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, bad).unwrap();
    let out = bin()
        .args(["check", "--allowlist"])
        .arg(&path)
        .arg("examples/manifests")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let detail = "hosts[1]: invalid host \"-bad.example.com\"";
    assert!(stderr.contains(detail), "{stderr}");
    assert!(message.contains(detail), "{message}");
    assert!(message.contains("line 3"), "{message}");
}

#[tokio::test]
async fn what_reload_would_refuse_is_refused_and_nothing_more() {
    let s = TestServer::start().await;
    // No key: a reload keeps the last good allowlist and counts an error.
    let mut review = fixture_json("validate-update-configmap-v1-egress-guard-allowlist");
    review["request"]["object"]["data"] = json!({"policy.yaml": "hosts: []\n"});
    let r = s
        .review("/validate", serde_json::to_vec(&review).unwrap())
        .await;
    assert_eq!(r["response"]["allowed"], false, "{r}");
    assert!(
        r["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("missing")
    );
    // A `*` entry loads, with a warning: allowed, and the warning comes back.
    let r = s
        .review("/validate", configmap_review("hosts: [\"*\"]\n"))
        .await;
    assert_eq!(r["response"]["allowed"], true, "{r}");
    assert!(
        r["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("every host"),
        "{r}"
    );
    // Every document the server's own loader accepts is accepted here too.
    for ok in [
        egress_guard::policy::allowlist::EXAMPLE,
        "mode: audit\n",
        "hosts: [{host: a.example, owner: team, reason: JIRA-1, expires: 2030-01-01}]\n",
    ] {
        assert!(egress_guard::policy::Allowlist::from_yaml(ok).is_ok());
        let r = s.review("/validate", configmap_review(ok)).await;
        assert_eq!(r["response"]["allowed"], true, "{ok}: {r}");
    }
    // Another ConfigMap is not the allowlist.
    let mut other = fixture_json("validate-update-configmap-v1-egress-guard-allowlist");
    other["request"]["name"] = json!("something-else");
    other["request"]["object"]["metadata"]["name"] = json!("something-else");
    other["request"]["object"]["data"] = json!({"allowlist.yaml": "not: [valid"});
    let r = s
        .review("/validate", serde_json::to_vec(&other).unwrap())
        .await;
    assert_eq!(r["response"]["allowed"], true, "{r}");
}

#[tokio::test]
async fn an_allowlist_larger_than_kubernetes_stores_is_denied_before_it_is_parsed() {
    let s = TestServer::start().await;
    let max = egress_guard::policy::MAX_CONFIGMAP_DATA;
    // Valid YAML that would load (the host list is fine), only too large to be stored:
    // the key counts too, as Kubernetes counts it.
    let entry = "  - a-host-name-of-some-length.example.com\n";
    let mut fits = String::from("hosts:\n");
    while fits.len() + entry.len() + "allowlist.yaml".len() <= max {
        fits.push_str(entry);
    }
    let r = s.review("/validate", configmap_review(&fits)).await;
    assert_eq!(
        r["response"]["allowed"],
        true,
        "at the limit: {}",
        fits.len()
    );

    let too_large = format!("{fits}{entry}");
    let r = s.review("/validate", configmap_review(&too_large)).await;
    let message = r["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(r["response"]["allowed"], false, "{message}");
    assert!(
        message.contains("EG120 data[allowlist.yaml]") && message.contains("at most 1048576"),
        "{message}"
    );
}

#[tokio::test]
async fn expired_entries_stop_granting_and_expiring_ones_warn() {
    let allowlist = format!(
        "hosts:\n  - {{host: api.github.com, owner: team-a, reason: JIRA-7, expires: {}}}\n  - {{host: upload.evil.example.org, expires: {}}}\n",
        date(5),
        date(-2)
    );
    let s = TestServer::start_with(Options {
        allowlist,
        ..Options::default()
    })
    .await;
    // Granted by an entry that ends in 5 days: allowed, with a warning naming it.
    let r = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-github-api"),
        )
        .await;
    assert_eq!(r["response"]["allowed"], true, "{r}");
    let warning = r["response"]["warnings"][0].as_str().unwrap();
    for part in [
        "api.github.com",
        "owner team-a",
        "reason JIRA-7",
        "ends within",
    ] {
        assert!(warning.contains(part), "{warning} lacks {part}");
    }
    // The expired entry grants nothing.
    let r = s
        .review(
            "/validate",
            fixture("validate-create-serviceentry-v1-exfil"),
        )
        .await;
    assert_eq!(r["response"]["allowed"], false, "{r}");
    // Metrics count both.
    common::eventually(Duration::from_secs(5), || async {
        let m = s.metrics_text().await;
        m.contains("egress_guard_allowlist_entries_expiring{window=\"7d\"} 1")
            && m.contains("egress_guard_allowlist_entries_expiring{window=\"expired\"} 1")
            && m.contains("egress_guard_allowlist_entries_expiring{window=\"30d\"} 1")
    })
    .await;
}

/// A ServiceEntry for api.github.com, one whose endpoint is an address in 10.0.0.0/8
/// (its host only a match key), and one that resolves db.corp.example itself.
const MANIFESTS: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: gh, namespace: team-a}\nspec: {hosts: [api.github.com], resolution: DNS, ports: [{number: 443, name: https, protocol: TLS}]}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db, namespace: team-a}\nspec: {hosts: [db.corp.example], addresses: [10.1.2.3], resolution: STATIC, ports: [{number: 5432, name: pg, protocol: TCP}], endpoints: [{address: 10.1.2.3}]}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db-dns, namespace: team-a}\nspec: {hosts: [db.corp.example], resolution: DNS, ports: [{number: 5432, name: pg, protocol: TCP}]}\n";

fn check_json(args: &[&str]) -> (Option<i32>, Value) {
    let out = bin().args(args).output().unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), v)
}

#[test]
fn check_explains_which_entry_grants_each_host() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allowlist.yaml");
    std::fs::write(
        &path,
        "hosts:\n  - {host: \"*.github.com\", owner: platform, reason: CHG-12}\ncidrs: [10.0.0.0/8]\n",
    )
    .unwrap();
    let manifests = dir.path().join("objects.yaml");
    std::fs::write(&manifests, MANIFESTS).unwrap();
    let (code, v) = check_json(&[
        "check",
        "--explain",
        "-o",
        "json",
        "--allowlist",
        path.to_str().unwrap(),
        manifests.to_str().unwrap(),
    ]);
    // db.corp.example is not allowed; the rest is explained.
    assert_eq!(code, Some(1), "{v}");
    let explained: Vec<String> = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["explanations"].as_array().cloned().unwrap_or_default())
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert!(
        explained.iter().any(|e| e.contains("*.github.com")
            && e.contains("owner platform")
            && e.contains("hosts[0]")),
        "{explained:?}"
    );
    assert!(
        explained.iter().any(|e| e.contains("10.0.0.0/8")),
        "{explained:?}"
    );
}

#[test]
fn check_against_shows_what_an_allowlist_change_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.yaml");
    let new = dir.path().join("new.yaml");
    std::fs::write(&old, egress_guard::policy::allowlist::EXAMPLE).unwrap();
    let narrowed = egress_guard::policy::allowlist::EXAMPLE.replace("  - api.github.com\n", "");
    assert_ne!(narrowed, egress_guard::policy::allowlist::EXAMPLE);
    std::fs::write(&new, &narrowed).unwrap();
    let args = |new: &std::path::Path, old: &std::path::Path| {
        vec![
            "check".to_owned(),
            "-o".to_owned(),
            "json".to_owned(),
            "--allowlist".to_owned(),
            new.display().to_string(),
            "--against".to_owned(),
            old.display().to_string(),
            "examples/manifests".to_owned(),
        ]
    };
    let run = |a: Vec<String>| {
        let out = bin().args(&a).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), v)
    };
    // Removing api.github.com breaks the objects that use it: exit 1, each listed
    // with the violation that appears.
    let (code, v) = run(args(&new, &old));
    assert_eq!(code, Some(1), "{v}");
    assert!(v["summary"]["newly_denied"].as_u64().unwrap() >= 1, "{v}");
    for c in v["changes"].as_array().unwrap() {
        assert_eq!(c["before"], "allow", "{c}");
        assert_eq!(c["after"], "deny", "{c}");
        assert!(
            c["appeared"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["value"].as_str().unwrap().contains("api.github.com")),
            "{c}"
        );
    }
    // The other way round nothing becomes denied: exit 0, the same objects listed.
    let (code, back) = run(args(&old, &new));
    assert_eq!(code, Some(0), "{back}");
    assert_eq!(back["summary"]["changed"], v["summary"]["changed"]);
    assert_eq!(back["summary"]["newly_denied"], 0);
    // No change, nothing listed.
    let (code, same) = run(args(&old, &old));
    assert_eq!(
        (code, same["summary"]["changed"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn check_now_previews_an_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allowlist.yaml");
    std::fs::write(
        &path,
        "hosts: [{host: api.github.com, expires: 2030-06-30}]\n",
    )
    .unwrap();
    let objects = dir.path().join("objects.yaml");
    std::fs::write(&objects, MANIFESTS.split("---").next().unwrap()).unwrap();
    let manifest = objects.to_str().unwrap();
    let verdict = |now: &str| {
        let (code, v) = check_json(&[
            "check",
            "-o",
            "json",
            "--now",
            now,
            "--allowlist",
            path.to_str().unwrap(),
            manifest,
        ]);
        (
            code,
            v["objects"][0]["verdict"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    assert_eq!(
        verdict("2030-06-30"),
        (Some(0), "allow".to_owned()),
        "the date itself still grants"
    );
    assert_eq!(verdict("2030-07-01"), (Some(1), "deny".to_owned()));
    assert_eq!(
        verdict("2030-06-30T23:59:59Z"),
        (Some(0), "allow".to_owned())
    );
}
