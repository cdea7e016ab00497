//! Host access that amounts to the host network: a container that can talk to the node's
//! container runtime can start a container with `hostNetwork: true` that no admission
//! webhook sees (the runtime is below the apiserver), and one that shares the node's
//! process namespace reaches the runtime's socket through `/proc/<pid>/root` (root in
//! the container is root on the node, and ptrace access between same-UID processes needs
//! no capability). `hostIPC` shares SysV and POSIX IPC with the node's processes; it
//! opens no connection and is left to Pod Security Admission (`baseline` forbids it, as
//! it forbids all three).
//!
//! A `readOnly` mount does not help: connecting to a Unix socket is not a write to its
//! file system.

use serde::Deserialize;

use crate::policy::decision::Code;
use crate::policy::judge::Findings;
use crate::policy::spec::{Str, null_default};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Volume<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    host_path: Option<HostPath<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HostPath<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    path: Str<'a>,
}

/// The container runtimes' API sockets, as kubelets are configured with them.
const RUNTIME_SOCKETS: [&str; 9] = [
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/run/docker.sock",
    "/run/cri-dockerd.sock",
    "/run/podman/podman.sock",
    "/run/dockershim.sock",
    "/run/cri-containerd/cri-containerd.sock",
    "/var/lib/kubelet/pod-resources/kubelet.sock",
];

/// Directories that hold another way to the node: its processes (and through them every
/// socket), and the kubelet's own state.
const NODE_TREES: [&str; 2] = ["/proc", "/var/lib/kubelet"];

/// Judges `hostPID` and every `hostPath` volume.
pub(crate) fn judge(
    host_pid: bool,
    volumes: &[Volume<'_>],
    base: &dyn Fn() -> String,
    out: &mut Findings<'_>,
) {
    if host_pid {
        out.record(
            Code::HostAccess,
            || format!("{}spec.hostPID", base()),
            "true",
            "the pod shares the node's processes, and through /proc/<pid>/root the container runtime's socket: it could start a container on the host network",
        );
    }
    for (i, v) in volumes.iter().enumerate() {
        let Some(hp) = &v.host_path else { continue };
        out.charge(hp.path.len());
        if let Some(reached) = reaches_node(&hp.path) {
            out.record(
                Code::HostAccess,
                || format!("{}spec.volumes[{i}].hostPath.path", base()),
                &hp.path,
                &format!(
                    "mounts {reached} of the node, from which a container could start another on the host network (mount a narrower path, or grant the namespace allowCaptureOptOut)"
                ),
            );
        }
    }
}

/// What of the node a host path exposes, if it exposes the runtime or the node's
/// processes: the path itself or a directory above a runtime socket.
fn reaches_node(raw: &str) -> Option<&'static str> {
    let path = normalise(raw);
    // /var/run is a symbolic link to /run on every current distribution.
    let path = match path.strip_prefix("/var/run") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("/run{rest}"),
        _ => path,
    };
    let within = |dir: &str, p: &str| p == dir || p.starts_with(&format!("{dir}/"));
    if path == "/" {
        return Some("the root file system");
    }
    if let Some(s) = RUNTIME_SOCKETS.iter().find(|s| within(&path, s)) {
        return Some(if **s == *path {
            "the container runtime's socket"
        } else {
            "a directory holding the container runtime's socket"
        });
    }
    NODE_TREES
        .iter()
        .any(|t| within(t, &path) || within(&path, t))
        .then_some("the node's process or kubelet tree")
}

/// The path the kubelet mounts: `.` and empty segments dropped, `..` applied (never
/// above the root), no trailing slash.
fn normalise(raw: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_sockets_and_their_directories_reach_the_node() {
        for p in [
            "/var/run/containerd/containerd.sock",
            "/run/containerd/containerd.sock",
            "/var/run/docker.sock",
            "/var/run",
            "/run/",
            "//var//run/./crio/",
            "/var/lib/../run/containerd",
            "/",
            "/../..",
            "/proc",
            "/proc/1/root",
            "/var/lib/kubelet",
            "/var/lib",
            "/run/k3s",
        ] {
            assert!(reaches_node(p).is_some(), "{p}");
        }
    }

    #[test]
    fn ordinary_host_paths_do_not() {
        for p in [
            "/var/log",
            "/var/log/pods",
            "/sys",
            "/etc/ssl/certs",
            "/dev/kmsg",
            "/run/xtables.lock",
            "/var/lib/docker/containers",
            "/tmp/cache",
            "/usr/share/zoneinfo",
        ] {
            assert_eq!(reaches_node(p), None, "{p}");
        }
    }
}
