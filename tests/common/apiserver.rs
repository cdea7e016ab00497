//! A real kube-apiserver for tests (`../shared/kube`, started by `.ci/run`), found the
//! envtest way: through `KUBECONFIG` and `KUBE_TEST_DIR`. Without one a test skips with
//! a message saying how to start it; under `CI=true` a missing server fails the test.
//!
//! Each test works in a namespace of its own ([`Kube::namespace`]), labelled so that a
//! webhook configuration it registers ([`Kube::register_webhook`]) matches that
//! namespace only: tests running side by side never judge each other's writes.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// The label that ties a test's namespace to the webhooks it registers.
pub const TEST_LABEL: &str = "egress-guard.io/test";

/// A running apiserver.
#[derive(Debug, Clone)]
pub struct Kube {
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// `$KUBE_TEST_DIR`: certificates under `certs/`.
    pub dir: PathBuf,
    /// The kubectl matching the server.
    pub kubectl: PathBuf,
}

/// Returns the apiserver, or from the calling test when there is none (skipped).
#[macro_export]
macro_rules! require_kube {
    () => {
        match $crate::common::apiserver::Kube::get(module_path!()) {
            Some(k) => k,
            None => return,
        }
    };
}

impl Kube {
    /// The apiserver named by the environment; `None` (after printing why) when there is
    /// none. Panics under `CI=true`: there the server must be up.
    pub fn get(test: &str) -> Option<Kube> {
        let found = std::env::var_os("KUBECONFIG")
            .zip(std::env::var_os("KUBE_TEST_DIR"))
            .map(|(kc, dir)| (PathBuf::from(kc), PathBuf::from(dir)))
            .filter(|(kc, dir)| kc.is_file() && dir.join("certs/ca.crt").is_file());
        let Some((kubeconfig, dir)) = found else {
            let how = "no kube-apiserver: start one with `eval \"$(../shared/kube/up.sh --env)\"` \
                       (KUBECONFIG and KUBE_TEST_DIR)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: {how}; CI=true requires it");
            }
            eprintln!("SKIPPED {test}: {how}");
            return None;
        };
        let kubectl = std::env::var_os("KUBECTL")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("bin/kubectl"));
        Some(Kube {
            kubeconfig,
            dir,
            kubectl,
        })
    }

    /// Runs kubectl with `args` (and `stdin`), returning what it printed.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(text) = stdin {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(text.as_bytes())
                .expect("kubectl reads stdin");
        }
        child.wait_with_output().expect("kubectl finishes")
    }

    /// Runs kubectl and returns its stdout; panics with its stderr when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `yaml`: Ok(stdout) or Err(stderr).
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        self.stdin(&["apply", "-f", "-"], yaml)
    }

    /// kubectl with `yaml` on stdin: Ok(stdout) or Err(stderr).
    pub fn stdin(&self, args: &[&str], yaml: &str) -> Result<String, String> {
        let out = self.run(args, Some(yaml));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A kube-rs client for the admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("kube config");
        kube::Client::try_from(cfg).expect("kube client")
    }

    /// A fresh namespace for one test (`<prefix>-<n>-<pid>`), labelled [`TEST_LABEL`] with
    /// its own name, deleted when dropped.
    pub fn namespace(&self, prefix: &str) -> TestNamespace {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            N.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        );
        self.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    {TEST_LABEL}: {name}\n"
        ))
        .expect("namespace created");
        TestNamespace {
            kube: self.clone(),
            name,
        }
    }

    /// The serving certificate and key `gen-certs.sh` made for a webhook on
    /// https://127.0.0.1, signed by the apiserver's CA.
    pub fn webhook_cert(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.join("certs/webhook.crt"),
            self.dir.join("certs/webhook.key"),
        )
    }

    /// The CA that signed [`Kube::webhook_cert`], base64, for a `caBundle`.
    pub fn ca_bundle(&self) -> String {
        let pem = std::fs::read(self.dir.join("certs/ca.crt")).expect("ca.crt");
        base64::engine::general_purpose::STANDARD.encode(pem)
    }

    /// The CA that signed [`Kube::webhook_cert`], PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("certs/ca.crt")).expect("ca.crt")
    }

    /// Registers `yaml` (Validating- or MutatingWebhookConfigurations, any number, e.g.
    /// `deploy/base/webhooks.yaml` as shipped) for as long as the returned guard lives.
    /// Every entry calls `https://127.0.0.1:<port>` (a `clientConfig.service` becomes
    /// that URL with the service's path) trusting the apiserver's CA; every namespaceSelector
    /// also requires `ns`'s [`TEST_LABEL`] (its own expressions stay), so only that
    /// test's writes reach it.
    pub fn register_webhook(&self, yaml: &str, port: u16, ns: &TestNamespace) -> Registered {
        let base = format!("https://127.0.0.1:{port}");
        let mut names = Vec::new();
        let mut docs = Vec::new();
        for doc in serde_norway::Deserializer::from_str(yaml) {
            use serde::Deserialize as _;
            let mut v = serde_json::Value::deserialize(doc).expect("webhook YAML");
            if v.is_null() {
                continue;
            }
            let name = format!("{}-{}", v["metadata"]["name"].as_str().unwrap(), ns.name);
            v["metadata"]["name"] = name.clone().into();
            for w in v["webhooks"].as_array_mut().expect("webhooks").iter_mut() {
                let cc = &mut w["clientConfig"];
                let path = cc["service"]["path"]
                    .as_str()
                    .unwrap_or("/validate")
                    .to_owned();
                if cc.get("url").is_none() {
                    *cc = serde_json::json!({"url": format!("{base}{path}")});
                }
                cc["caBundle"] = self.ca_bundle().into();
                let sel = &mut w["namespaceSelector"];
                if !sel.is_object() {
                    *sel = serde_json::json!({});
                }
                sel["matchLabels"][TEST_LABEL] = ns.name.clone().into();
            }
            names.push((v["kind"].as_str().unwrap().to_owned(), name));
            docs.push(v);
        }
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs});
        self.apply(&list.to_string()).expect("webhooks registered");
        Registered {
            kube: self.clone(),
            names,
        }
    }

    /// True when up.sh's kube-controller-manager runs (`controllers.sh`); panics under
    /// `CI=true`, where `.ci/run` starts it.
    pub fn controllers_running(&self) -> bool {
        let pid = std::fs::read_to_string(self.dir.join("run/controller-manager.pid"))
            .ok()
            .and_then(|p| std::fs::read_to_string(format!("/proc/{}/cmdline", p.trim())).ok());
        let running = pid.is_some_and(|c| c.contains("kube-controller-manager"));
        if !running {
            let how = "no kube-controller-manager: start it with ../shared/kube/controllers.sh";
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "{how}; CI=true requires it"
            );
            eprintln!("SKIPPED: {how}");
        }
        running
    }

    /// Polls `check` every 100 ms until it returns `Some`, or panics after `deadline`
    /// naming `what`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        deadline: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                start.elapsed() < deadline,
                "{what}: not within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A namespace that is deleted when the test ends.
#[derive(Debug)]
pub struct TestNamespace {
    kube: Kube,
    /// Its name.
    pub name: String,
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = self.kube.run(
            &[
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ],
            None,
        );
    }
}

/// Webhook configurations registered by a test, deleted when dropped (before the server
/// that answers them stops, so that no write is left failing closed).
#[derive(Debug)]
pub struct Registered {
    kube: Kube,
    names: Vec<(String, String)>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        for (kind, name) in &self.names {
            let _ = self.kube.run(
                &["delete", &kind.to_lowercase(), name, "--ignore-not-found"],
                None,
            );
        }
    }
}
