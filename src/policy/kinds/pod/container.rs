//! A container of a pod or template, as the pod checks read it, and the checks that
//! hold for every container whoever added it: the connections the kubelet makes for it
//! (probes and lifecycle hooks), and the privileges that reach the packet filter.

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::policy::decision::Code;
use crate::policy::judge::{Context, EgressRef, Findings, Reach, kube_ip};
use crate::policy::spec::{Str, Streamed, null_default};

/// A container: only the fields some check reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Container<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    pub(crate) name: Str<'a>,
    #[serde(borrow)]
    pub(crate) image: Option<Str<'a>>,
    // Judged one element at a time: a list as long as the body allows.
    #[serde(borrow)]
    pub(crate) command: Streamed<'a, Str<'a>>,
    #[serde(borrow)]
    pub(crate) args: Streamed<'a, Str<'a>>,
    #[serde(borrow, deserialize_with = "null_default")]
    pub(crate) env: Vec<EnvVar<'a>>,
    pub(crate) env_from: Option<IgnoredAny>,
    #[serde(borrow, deserialize_with = "null_default")]
    pub(crate) volume_mounts: Vec<Mount<'a>>,
    pub(crate) working_dir: Option<IgnoredAny>,
    // Boxed, as the security context: a container is moved while it is decoded and
    // judged, and these are most of its size.
    #[serde(borrow)]
    pub(crate) lifecycle: Option<Box<Lifecycle<'a>>>,
    #[serde(borrow)]
    pub(crate) liveness_probe: Option<Box<Handler<'a>>>,
    #[serde(borrow)]
    pub(crate) readiness_probe: Option<Box<Handler<'a>>>,
    #[serde(borrow)]
    pub(crate) startup_probe: Option<Box<Handler<'a>>>,
    #[serde(borrow)]
    pub(crate) security_context: Option<Box<SecurityContext<'a>>>,
}

/// An environment variable: its name, and its value when it is written out.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct EnvVar<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    pub(crate) name: Str<'a>,
    #[serde(borrow)]
    pub(crate) value: Option<Str<'a>>,
}

/// A volume mount: where it goes.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Mount<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    pub(crate) mount_path: Str<'a>,
}

/// `lifecycle`: the hooks the kubelet runs.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Lifecycle<'a> {
    #[serde(borrow)]
    pub(crate) post_start: Option<Handler<'a>>,
    #[serde(borrow)]
    pub(crate) pre_stop: Option<Handler<'a>>,
}

/// A probe or a lifecycle hook: a command in the container, or a connection the kubelet
/// makes (HTTP, TCP, gRPC), or a sleep.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Handler<'a> {
    #[serde(borrow)]
    pub(crate) exec: Option<Exec<'a>>,
    #[serde(borrow)]
    pub(crate) http_get: Option<Endpoint<'a>>,
    #[serde(borrow)]
    pub(crate) tcp_socket: Option<Endpoint<'a>>,
}

/// `exec`: the command run in the container.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Exec<'a> {
    #[serde(borrow)]
    pub(crate) command: Streamed<'a, Str<'a>>,
}

/// `httpGet` or `tcpSocket`: where the kubelet connects (the pod's IP when `host` is
/// empty). gRPC probes have no host: the kubelet always dials the pod.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Endpoint<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    pub(crate) host: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SecurityContext<'a> {
    pub(crate) run_as_user: Option<i64>,
    pub(crate) run_as_group: Option<i64>,
    pub(crate) privileged: Option<bool>,
    #[serde(borrow)]
    pub(crate) capabilities: Option<Capabilities<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Capabilities<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    pub(crate) add: Vec<Str<'a>>,
}

impl Container<'_> {
    /// The probes and hooks with where they sit (`livenessProbe`, `lifecycle.preStop`).
    pub(crate) fn handlers(&self) -> impl Iterator<Item = (&'static str, &Handler<'_>)> {
        let hooks = self.lifecycle.as_deref();
        [
            ("livenessProbe", self.liveness_probe.as_deref()),
            ("readinessProbe", self.readiness_probe.as_deref()),
            ("startupProbe", self.startup_probe.as_deref()),
            (
                "lifecycle.postStart",
                hooks.and_then(|l| l.post_start.as_ref()),
            ),
            ("lifecycle.preStop", hooks.and_then(|l| l.pre_stop.as_ref())),
        ]
        .into_iter()
        .filter_map(|(at, h)| Some((at, h?)))
    }

    /// The setting that lets the container rewrite the pod's packet filter, as the
    /// denial quotes it: `privileged: true`, or `NET_ADMIN` (or `ALL`) among the added
    /// capabilities, spelled as written.
    pub(crate) fn net_admin(&self) -> Option<String> {
        let sc = self.security_context.as_deref()?;
        if sc.privileged == Some(true) {
            return Some("privileged: true".to_owned());
        }
        let cap = sc
            .capabilities
            .as_ref()?
            .add
            .iter()
            .find(|c| grants_net_admin(c))?;
        Some(format!("capabilities.add: {}", &**cap))
    }
}

/// A capability name as container runtimes read it: case-insensitively, with or without
/// the `CAP_` prefix (CRI-O accepts `cap_net_admin` and `Net_Admin`; containerd and
/// Docker the canonical spellings), `ALL` meaning every capability.
pub(crate) fn grants_net_admin(name: &str) -> bool {
    let name = name.trim();
    let bare = match name.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("CAP_") => name.get(4..).unwrap_or_default(),
        _ => name,
    };
    bare.eq_ignore_ascii_case("NET_ADMIN") || bare.eq_ignore_ascii_case("ALL")
}

/// The connections the kubelet makes for a container's probes and hooks: from the node,
/// outside the mesh and outside every pod NetworkPolicy. Without a `host` it dials the
/// pod; a host set there is judged as egress from the node, where loopback is the
/// node's own (unless the pod shares the node's network).
pub(crate) fn kubelet_connections(
    c: &Container<'_>,
    path: &dyn Fn() -> String,
    host_network: bool,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    for (at, h) in c.handlers() {
        for (kind, endpoint) in [("httpGet", &h.http_get), ("tcpSocket", &h.tcp_socket)] {
            let Some(host) = endpoint
                .as_ref()
                .map(|e| &*e.host)
                .filter(|h| !h.is_empty())
            else {
                continue;
            };
            if !out.charge(host.len()) {
                return;
            }
            let field = || format!("{}.{at}.{kind}.host", path());
            let loopback = kube_ip(host).map_or(host.eq_ignore_ascii_case("localhost"), |ip| {
                ip.is_loopback()
            });
            if loopback {
                if !host_network && !granted_loopback(host, cx) {
                    out.record(
                        Code::AddressNotAllowed,
                        field,
                        host,
                        "the kubelet connects from the node: loopback there is the node's own services, not the pod",
                    );
                }
                continue;
            }
            let reach = match kube_ip(host) {
                Some(ip) => Reach::Net(ip.into()),
                None => Reach::Dialled,
            };
            out.egress(cx, EgressRef::new(&field, host, reach));
        }
    }
}

/// True when the allowlist grants the loopback address `host` names.
fn granted_loopback(host: &str, cx: &Context<'_>) -> bool {
    let ip = kube_ip(host).unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    cx.allowlist.net_allowed(cx.namespace, &ip.into(), cx.now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_read_as_runtimes_read_them() {
        for granted in [
            "NET_ADMIN",
            "CAP_NET_ADMIN",
            "cap_net_admin",
            "Cap_Net_Admin",
            "net_admin",
            "ALL",
            "all",
            "CAP_ALL",
            " NET_ADMIN ",
        ] {
            assert!(grants_net_admin(granted), "{granted}");
        }
        for not in ["NET_RAW", "CAP_NET_BIND_SERVICE", "NET_ADMINX", "", "CAP_"] {
            assert!(!grants_net_admin(not), "{not}");
        }
    }
}
