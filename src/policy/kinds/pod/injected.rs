//! What Istio's sidecar injector produces, so that a container named like an injected
//! one is judged by what it does, not trusted by its name: the proxy (`istio-proxy`),
//! the container that installs the capture rules (`istio-init`) and the one that checks
//! the rules the CNI plugin installed (`istio-validation`).
//!
//! Two readings. A template's container with one of these names (or an entry of the
//! `sidecar.istio.io/overrides` annotation) is merged by the injector over its own, so
//! what it sets is what the injected container will have: [`customisation`] names what
//! it changes that matters (an image, a command, capture settings in its environment,
//! a mount over a file the proxy reads, a command run as the proxy), and lets the rest
//! through (resources, probes that are not commands, the kubelet's `sleep`,
//! `terminationMessagePath`, `tty`, environment the agent reads for its own settings).
//! A pod's containers that the status annotation lists were merged already, so they are
//! held to the injector's own shape ([`judge_injected`]): no command, the injector's
//! arguments, no hooks or probes that run a command other than `pilot-agent`'s, and the
//! proxy image. The shapes follow `injection-template.yaml` and
//! `gateway-injection-template.yaml` (manifests/charts/istio-control/istio-discovery/
//! files) and `tools/istio-iptables/pkg/cmd/root.go`.

use std::ops::ControlFlow;

use super::container::Container;
use crate::policy::decision::Code;
use crate::policy::judge::{Context, Findings};
use crate::policy::spec::{Str, Streamed};

/// The UID and GID Istio's capture rules exempt (`--uid-owner` / `--gid-owner`).
pub(crate) const PROXY_UID: i64 = 1337;
/// The proxy.
pub(crate) const PROXY: &str = "istio-proxy";
/// Installs the capture rules, as an init container (without the CNI plugin).
pub(crate) const INIT: &str = "istio-init";
/// Checks the rules the CNI plugin installed before any container ran.
pub(crate) const VALIDATION: &str = "istio-validation";
/// The containers the injector adds.
pub(crate) const NAMES: [&str; 3] = [PROXY, INIT, VALIDATION];

/// Paths the proxy and istio-agent read or serve from: a mount over one of them (or
/// over a directory holding one) replaces the proxy's bootstrap, its identity, its
/// control plane's trust or its binaries.
const PROTECTED: [&str; 11] = [
    "/etc/istio/proxy",
    "/etc/istio/pod",
    "/etc/istio/config",
    "/var/lib/istio",
    "/var/run/secrets/istio",
    "/var/run/secrets/tokens",
    "/var/run/secrets/workload-spiffe-uds",
    "/var/run/secrets/workload-spiffe-credentials",
    "/var/run/secrets/credential-uds",
    "/usr/local/bin",
    "/etc/certs",
];

/// The first protected path a mount at `mount_path` covers or lies inside.
pub(crate) fn covers_protected(mount_path: &str) -> Option<&'static str> {
    let path = normalize(mount_path);
    PROTECTED.into_iter().find(|p| {
        path == *p
            || p.strip_prefix(path.as_str())
                .is_some_and(|rest| path == "/" || rest.starts_with('/'))
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// A mount path as the kernel resolves it: absolute, without `.`, `..` or empty
/// components.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Environment that redirects the proxy itself: its control plane and bootstrap
/// (`PROXY_CONFIG`, `ISTIO_BOOTSTRAP*`), the CA it fetches its identity from and the
/// roots it trusts for both. pilot-agent settings such as drain times, log levels or
/// `OUTPUT_CERTS` are not among them.
const PROXY_ENV: [&str; 6] = [
    "PROXY_CONFIG",
    "CA_ADDR",
    "ISTIO_BOOTSTRAP",
    "ISTIO_BOOTSTRAP_OVERRIDE",
    "XDS_ROOT_CA",
    "CA_ROOT_CA",
];

/// True when `name` set in the proxy's environment redirects the proxy.
pub(crate) fn redirects_proxy(name: &str) -> bool {
    PROXY_ENV.contains(&name)
}

/// How `istio-iptables` reads one variable of its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    /// Any value can take traffic out of capture.
    Weakens,
    /// Only turns a capture feature on or off: `true` adds capture, anything else may
    /// take it away.
    Enables,
    /// Outbound capture is whole only with this value (`*`).
    All,
    /// Excluded ranges: allowed when every one is allowed for the namespace.
    Ranges,
    /// Interception of inbound traffic only, or diagnostics: no effect on egress.
    Neutral,
}

/// Every variable `istio-iptables` reads (flags bound to the environment in
/// `tools/istio-iptables/pkg/cmd/root.go`, and the `env.Register`ed ones in its
/// `constants`), by what it can do to outbound capture.
const IPTABLES_ENV: [(&str, Setting); 38] = [
    ("ISTIO_SERVICE_CIDR", Setting::All),
    ("ISTIO_SERVICE_EXCLUDE_CIDR", Setting::Ranges),
    ("ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE", Setting::Weakens),
    ("ISTIO_EXCLUDE_INTERFACES", Setting::Weakens),
    ("ISTIO_OUTBOUND_OWNER_GROUPS", Setting::All),
    ("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", Setting::Weakens),
    ("ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR", Setting::Weakens),
    ("PROXY_UID", Setting::Weakens),
    ("PROXY_GID", Setting::Weakens),
    ("ENVOY_USER", Setting::Weakens),
    ("DRY_RUN", Setting::Weakens),
    ("DRY_RUN_FILE_PATH", Setting::Weakens),
    ("SKIP_RULE_APPLY", Setting::Weakens),
    ("RUN_VALIDATION", Setting::Weakens),
    ("CLEANUP_ONLY", Setting::Weakens),
    ("NETWORK_NAMESPACE", Setting::Weakens),
    ("CNI_MODE", Setting::Weakens),
    ("FORCE_IPTABLES_BINARY", Setting::Weakens),
    ("ISTIO_INBOUND_INTERCEPTION_MODE", Setting::Weakens),
    ("INBOUND_INTERCEPTION_MODE", Setting::Weakens),
    ("REDIRECT_DNS", Setting::Enables),
    ("CAPTURE_ALL_DNS", Setting::Enables),
    ("DUAL_STACK", Setting::Enables),
    ("ISTIO_DUAL_STACK", Setting::Enables),
    ("DROP_INVALID", Setting::Enables),
    ("INVALID_DROP", Setting::Enables),
    ("ISTIO_INBOUND_PORTS", Setting::Neutral),
    ("ISTIO_LOCAL_EXCLUDE_PORTS", Setting::Neutral),
    ("INBOUND_CAPTURE_PORT", Setting::Neutral),
    ("INBOUND_TUNNEL_PORT", Setting::Neutral),
    ("ISTIO_INBOUND_TPROXY_MARK", Setting::Neutral),
    ("ISTIO_INBOUND_TPROXY_ROUTE_TABLE", Setting::Neutral),
    ("INBOUND_TPROXY_MARK", Setting::Neutral),
    ("ISTIO_OUTBOUND_PORTS", Setting::Neutral),
    ("KUBE_VIRT_INTERFACES", Setting::Neutral),
    ("IPTABLES_PROBE_PORT", Setting::Neutral),
    ("PROBE_TIMEOUT", Setting::Neutral),
    ("RECONCILE", Setting::Neutral),
];

/// True when `name=value` in istio-init's environment can take outbound traffic out of
/// capture in this namespace. `value` is `None` when it is not written out (from a
/// ConfigMap or a field reference): then only the variables that have no harmless value
/// are held against it.
pub(crate) fn weakens_capture(name: &str, value: Option<&str>, cx: &Context<'_>) -> bool {
    let Some((_, setting)) = IPTABLES_ENV.iter().find(|(n, _)| *n == name) else {
        return false;
    };
    let value = value.map(str::trim);
    match setting {
        Setting::Neutral => false,
        Setting::Weakens => value.is_none_or(|v| !v.is_empty()),
        Setting::Enables => value.is_none_or(|v| !v.eq_ignore_ascii_case("true")),
        Setting::All => value.is_none_or(|v| v != "*"),
        Setting::Ranges => value.is_none_or(|v| !ranges_allowed(v, cx)),
    }
}

/// True when every range of a comma-separated list lies inside what the namespace may
/// reach (cluster networks included): excluding it from capture opens nothing new.
pub(crate) fn ranges_allowed(ranges: &str, cx: &Context<'_>) -> bool {
    ranges
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .all(|r| {
            r.parse::<ipnet::IpNet>()
                .is_ok_and(|n| cx.allowlist.net_allowed(cx.namespace, &n, cx.now))
        })
}

/// What a container merged over the injected one called `c.name` changes that decides
/// where traffic goes, or `None`. Read with the namespace's grants for excluded ranges.
pub(crate) fn customisation(c: &Container<'_>, cx: &Context<'_>) -> Option<String> {
    let proxy = &*c.name == PROXY;
    // What the injected container may run, it may also be customised to: the proxy
    // image and the injector's own arguments (`istioctl kube-inject` output restates
    // them), so the template gets the verdict of the pods it makes.
    if let Some(image) = c.image.as_deref().filter(|i| *i != "auto")
        && let Some(why) = image_problem(image, cx)
    {
        return Some(format!("image ({image}: {why})"));
    }
    if !c.command.is_empty() {
        return Some("command".to_owned());
    }
    if !c.args.is_empty() {
        let ids = Injection {
            proxy_users: &[PROXY_UID],
            proxy_groups: &[PROXY_UID],
        };
        let at = || format!("{}.args", &*c.name);
        let verdict = if proxy {
            proxy_args(&c.args, &at)
        } else {
            iptables_args(&c.args, &*c.name == VALIDATION, ids, &at, cx)
        };
        if verdict.is_err() {
            return Some("arguments".to_owned());
        }
    }
    for e in &c.env {
        let value = e.value.as_deref();
        if proxy && redirects_proxy(&e.name) {
            return Some(format!("control plane or bootstrap ({})", &*e.name));
        }
        if !proxy && weakens_capture(&e.name, value, cx) {
            return Some(format!("capture settings ({})", &*e.name));
        }
    }
    if c.env_from.is_some() {
        return Some("environment (envFrom, whose names cannot be checked)".to_owned());
    }
    if let Some((at, p)) = c
        .volume_mounts
        .iter()
        .find_map(|m| Some((&*m.mount_path, covers_protected(&m.mount_path)?)))
    {
        return Some(format!("files (a mount at {at} covers {p})"));
    }
    if c.working_dir.is_some() {
        return Some("working directory".to_owned());
    }
    if c.handlers().any(|(_, h)| h.exec.is_some()) {
        return Some("commands (an exec probe or hook runs as the proxy)".to_owned());
    }
    // istio-init and istio-validation run only istio-iptables with the arguments
    // checked above: the identity and privileges they run with (the injector's root
    // and NET_ADMIN, restated by kube-inject output) open nothing.
    if !proxy {
        return None;
    }
    // The istio/gateway chart restates the injector's own identity (1337): only
    // another identity, or a privilege the proxy does not have, changes anything.
    let sc = c.security_context.as_deref();
    let other = |id: Option<i64>| id.is_some_and(|id| id != PROXY_UID);
    if sc.is_some_and(|s| other(s.run_as_user) || other(s.run_as_group)) {
        return Some("identity (a user or group other than 1337)".to_owned());
    }
    if c.net_admin().is_some() {
        return Some("privileges (NET_ADMIN or privileged)".to_owned());
    }
    None
}

/// What the pod says about the injected containers, to hold them to the injector's shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Injection<'a> {
    /// The UIDs the proxy runs as (`-u` of istio-iptables): 1337, or what the pod's
    /// istio-proxy container says (on OpenShift the top of the namespace's range).
    pub(crate) proxy_users: &'a [i64],
    /// The GIDs, likewise (`-g`).
    pub(crate) proxy_groups: &'a [i64],
}

impl Injection<'_> {
    fn exempts(ids: &[i64], value: &str) -> bool {
        value.parse::<i64>().is_ok_and(|v| ids.contains(&v))
    }
}

/// A container of a pod that the injector's status lists: held to what the injector
/// writes. `name` is one of [`NAMES`].
pub(crate) fn judge_injected(
    c: &Container<'_>,
    injection: Injection<'_>,
    path: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let proxy = &*c.name == PROXY;
    let code = if proxy {
        Code::ProxyReplaced
    } else {
        Code::CaptureExcluded
    };
    if !c.command.is_empty() {
        let at = || format!("{}.command", path());
        // The value shown is what would run: the command's first word.
        let mut program = String::new();
        let _ = c.command.walk(&at, |_, word| {
            program = word.to_string();
            ControlFlow::Break(())
        });
        out.record(
            code,
            at,
            &program,
            "the injector sets no command: this one replaces what the container runs",
        );
    }
    let at = || format!("{}.args", path());
    let verdict = if proxy {
        proxy_args(&c.args, &at)
    } else {
        iptables_args(&c.args, &*c.name == VALIDATION, injection, &at, cx)
    };
    match verdict {
        Ok(()) => {}
        Err(ArgsError::Spec(e)) => out.spec_error(&e),
        Err(ArgsError::Differs(value, why)) => out.record(code, at, &value, &why),
    }
    for (field, h) in c.handlers() {
        let Some(exec) = &h.exec else { continue };
        let mut words = Vec::new();
        let walked = exec
            .command
            .walk(&|| format!("{}.{field}.exec.command", path()), |_, w| {
                words.push(w);
                if words.len() < 2 {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            });
        if let Err(e) = walked {
            out.spec_error(&e);
            continue;
        }
        let first: Vec<&str> = words.iter().map(|w| &**w).collect();
        if !matches!(first.as_slice(), ["pilot-agent", "wait" | "request"]) {
            out.record(
                code,
                || format!("{}.{field}.exec.command", path()),
                first.first().copied().unwrap_or_default(),
                "runs a command as the proxy, whose traffic the capture rules let through (the injector's hooks run only pilot-agent wait or request)",
            );
        }
    }
    judge_image(c, path, cx, out);
}

/// The injected containers run the proxy image: one of `proxyImages` when the allowlist
/// names them, otherwise an image named `proxyv2…` (Istio's, and every distribution's
/// build of it; any registry can host one of that name, which `proxyImages` closes).
fn judge_image(
    c: &Container<'_>,
    path: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let image = c.image.as_deref().unwrap_or_default();
    if let Some(why) = image_problem(image, cx) {
        out.record(
            Code::ProxyReplaced,
            || format!("{}.image", path()),
            image,
            why,
        );
    }
}

/// Why `image` is not one the injected containers may run, or `None`.
fn image_problem(image: &str, cx: &Context<'_>) -> Option<&'static str> {
    let allowed = &cx.allowlist.proxy_images;
    if !allowed.is_empty() {
        (!allowed.iter().any(|p| image.starts_with(&**p)))
            .then_some("not one of the allowlist's proxyImages")
    } else if !is_proxy_image(image) {
        Some("not a proxy image (proxyv2): the injected containers run the proxy image")
    } else {
        None
    }
}

/// True for an image whose repository's last part is `proxyv2` or starts with it
/// (`docker.io/istio/proxyv2:1.28.0-distroless`, `…/proxyv2-rhel9@sha256:…`).
pub(crate) fn is_proxy_image(image: &str) -> bool {
    let repo = image.split('@').next().unwrap_or_default();
    let last = repo.rsplit('/').next().unwrap_or_default();
    let name = last.split(':').next().unwrap_or_default();
    name.starts_with("proxyv2")
}

/// Why arguments differ from the injector's.
enum ArgsError {
    Spec(crate::policy::spec::SpecError),
    Differs(String, String),
}

/// The flags the injector (and istiod, for the gateways and waypoints it deploys) passes
/// after `proxy sidecar`, `proxy router` or `proxy waypoint`.
const PROXY_FLAGS: [&str; 9] = [
    "--domain",
    "--serviceCluster",
    "--proxyLogLevel",
    "--proxyComponentLogLevel",
    "--log_output_level",
    "--stsPort",
    "--log_as_json",
    "--outlierLogPath",
    "--concurrency",
];

/// The proxy's arguments: `proxy sidecar` (or `router`, `waypoint`), then the injector's
/// flags, each with its value.
fn proxy_args(args: &Streamed<'_, Str<'_>>, at: &dyn Fn() -> String) -> Result<(), ArgsError> {
    let mut bad = None;
    let mut expect_value = false;
    args.walk(at, |i, a| {
        let ok = match i {
            0 => &*a == "proxy",
            1 => matches!(&*a, "sidecar" | "router" | "waypoint"),
            _ if expect_value => {
                expect_value = false;
                true
            }
            _ => {
                let flag = a.split_once('=').map_or(&*a, |(f, _)| f);
                expect_value = !a.contains('=') && flag != "--log_as_json";
                PROXY_FLAGS.contains(&flag)
            }
        };
        if ok {
            ControlFlow::Continue(())
        } else {
            bad = Some((i, a.to_string()));
            ControlFlow::Break(())
        }
    })
    .map_err(ArgsError::Spec)?;
    match bad {
        Some((0 | 1, a)) => Err(ArgsError::Differs(
            a,
            "the proxy runs `pilot-agent proxy sidecar` (or `proxy router` in a gateway): these arguments run something else".to_owned(),
        )),
        Some((_, a)) => Err(ArgsError::Differs(
            a,
            "not a flag the injector passes to the proxy: it may point the proxy at other files or another control plane".to_owned(),
        )),
        None if args.is_empty() => Err(ArgsError::Differs(
            String::new(),
            "the injected proxy runs `proxy sidecar`: without arguments the image's own entry point runs".to_owned(),
        )),
        None => Ok(()),
    }
}

/// `istio-init` and `istio-validation`: `istio-iptables` with the injector's flags, whose
/// values must capture what the pod's annotations are allowed to leave captured.
fn iptables_args(
    args: &Streamed<'_, Str<'_>>,
    validation: bool,
    injection: Injection<'_>,
    at: &dyn Fn() -> String,
    cx: &Context<'_>,
) -> Result<(), ArgsError> {
    let mut problem: Option<(String, String)> = None;
    let mut pending: Option<String> = None;
    let mut saw_run_validation = false;
    args.walk(at, |i, a| {
        let a = &*a;
        let found = if i == 0 {
            (a != "istio-iptables").then(|| {
                (
                    a.to_owned(),
                    "the injector runs `istio-iptables`: these arguments run something else"
                        .to_owned(),
                )
            })
        } else if let Some(flag) = pending.take() {
            iptables_value(&flag, a, injection, cx).map(|why| (format!("{flag} {a}"), why))
        } else {
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v)),
                _ => (a, None),
            };
            match flag {
                "-p" | "-z" | "-u" | "-m" | "-i" | "-x" | "-b" | "-d" | "-q" | "-o" | "-k"
                | "-c" | "-g" => {
                    pending = Some(flag.to_owned());
                    None
                }
                "--log_output_level" | "--log_as_json" | "--force-apply" | "--native-nftables" => {
                    let _ = inline;
                    None
                }
                "--run-validation" if validation => {
                    saw_run_validation = true;
                    None
                }
                "--skip-rule-apply" if validation => None,
                other => Some((
                    other.to_owned(),
                    "not a flag the injector passes: it can change or skip the capture rules"
                        .to_owned(),
                )),
            }
        };
        match found {
            Some(p) => {
                problem = Some(p);
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    })
    .map_err(ArgsError::Spec)?;
    if let Some((value, why)) = problem {
        return Err(ArgsError::Differs(value, why));
    }
    if args.is_empty() {
        return Err(ArgsError::Differs(
            String::new(),
            "the injector runs `istio-iptables`: without arguments the image's own entry point runs".to_owned(),
        ));
    }
    if validation && !saw_run_validation {
        return Err(ArgsError::Differs(
            String::new(),
            "istio-validation only validates (--run-validation): without it, it changes the rules"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Why a flag's value takes traffic out of capture, or `None` when it is the injector's
/// (or as allowed as the annotation it came from).
fn iptables_value(flag: &str, value: &str, ids: Injection<'_>, cx: &Context<'_>) -> Option<String> {
    let v = value.trim();
    let why = match flag {
        "-p" if v != "15001" => "redirects outbound traffic to a port other than the proxy's",
        "-u" if !Injection::exempts(ids.proxy_users, v) => {
            "exempts a UID other than the proxy's from capture"
        }
        "-g" if !Injection::exempts(ids.proxy_groups, v) => {
            "exempts a GID other than the proxy's from capture"
        }
        "-m" if !matches!(v, "REDIRECT" | "TPROXY") => "an interception mode that captures nothing",
        "-i" if v != "*" => "captures only these ranges; the rest leaves without the proxy",
        "-x" if !ranges_allowed(v, cx) => {
            "excludes ranges outside what the namespace may reach from capture"
        }
        "-o" | "-c" if !v.is_empty() => "excludes these ports or interfaces from capture",
        _ => return None,
    };
    Some(why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_over_what_the_proxy_reads_are_found() {
        for covering in [
            "/etc/istio/proxy",
            "/etc/istio/proxy/",
            "/etc/istio",
            "/etc/istio/proxy/envoy-rev.json",
            "/",
            "/var/run/secrets",
            "/var/run/secrets/istio/root-cert.pem",
            "/var/lib/istio/envoy/envoy_bootstrap_tmpl.json",
            "/etc/./istio//proxy",
            "/tmp/../etc/istio/proxy",
            "/usr/local/bin/pilot-agent",
        ] {
            assert!(covers_protected(covering).is_some(), "{covering}");
        }
        for not in [
            "/etc/istio-extra",
            "/var/run/secrets/kubernetes.io",
            "/data",
            "/etc/config",
            "/var/lib/istiox",
        ] {
            assert_eq!(covers_protected(not), None, "{not}");
        }
    }

    #[test]
    fn proxy_images_are_told_by_name() {
        for ok in [
            "docker.io/istio/proxyv2:1.28.0",
            "gcr.io/istio-release/proxyv2:1.28.0-distroless",
            "registry.redhat.io/openshift-service-mesh/proxyv2-rhel9@sha256:abc",
            "localhost:5000/istio/proxyv2",
        ] {
            assert!(is_proxy_image(ok), "{ok}");
        }
        for not in [
            "busybox",
            "registry.evil.example.org/envoy:latest",
            "proxyv2.evil/curl:1",
            "",
        ] {
            assert!(!is_proxy_image(not), "{not}");
        }
    }
}
