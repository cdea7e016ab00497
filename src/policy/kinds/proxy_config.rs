//! The `proxy.istio.io/config` annotation: a ProxyConfig the injector applies to the
//! pod's proxy. Its telemetry addresses (tracing, StatsD, metrics and access-log
//! services) are egress from the proxy, and `discoveryAddress` hands the proxy to
//! another control plane, which then decides where everything goes.

use serde::Deserialize;

use super::{Context, Findings, Pairs};
use crate::policy::decision::Code;
use crate::policy::matcher::PortSet;

/// The annotation.
pub const ANNOTATION: &str = "proxy.istio.io/config";
/// A ProxyConfig larger than this is not read (real ones are a few lines).
const MAX_LEN: usize = 64 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ProxyConfig {
    discovery_address: Option<String>,
    statsd_udp_address: Option<String>,
    envoy_metrics_service: Option<Remote>,
    envoy_access_log_service: Option<Remote>,
    tracing: Option<Tracing>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Remote {
    address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Tracing {
    zipkin: Option<Remote>,
    lightstep: Option<Remote>,
    datadog: Option<Remote>,
    open_census_agent: Option<Remote>,
}

/// Judges the annotation if the object carries one; `base` prefixes the path.
pub(super) fn inspect(
    annotations: &Pairs,
    base: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let Some(raw) = annotations.get(ANNOTATION) else {
        return;
    };
    let path = || format!("{}metadata.annotations[{ANNOTATION}]", base());
    let unreadable = |why: &str, out: &mut Findings<'_>| {
        out.violation(
            Code::ProxyReplaced,
            path(),
            "",
            &format!("the proxy config cannot be checked ({why}); the injector would apply it"),
        );
    };
    if raw.len() > MAX_LEN {
        return unreadable("larger than 64 KiB", out);
    }
    out.charge(raw.len() * 16);
    let config: ProxyConfig = match serde_norway::from_str(raw) {
        Ok(c) => c,
        Err(e) => return unreadable(&e.to_string(), out),
    };
    if let Some(d) = config.discovery_address.filter(|d| !d.is_empty())
        && !cx.allowlist.may_opt_out(cx.namespace)
    {
        out.violation(
            Code::ProxyReplaced,
            format!("{}.discoveryAddress", path()),
            &d,
            "points the proxy at another control plane, which then decides where traffic goes",
        );
    }
    let tracing = config.tracing.unwrap_or_default();
    let addresses = [
        ("statsdUdpAddress", config.statsd_udp_address),
        (
            "envoyMetricsService.address",
            config.envoy_metrics_service.and_then(|r| r.address),
        ),
        (
            "envoyAccessLogService.address",
            config.envoy_access_log_service.and_then(|r| r.address),
        ),
        (
            "tracing.zipkin.address",
            tracing.zipkin.and_then(|r| r.address),
        ),
        (
            "tracing.lightstep.address",
            tracing.lightstep.and_then(|r| r.address),
        ),
        (
            "tracing.datadog.address",
            tracing.datadog.and_then(|r| r.address),
        ),
        (
            "tracing.openCensusAgent.address",
            tracing.open_census_agent.and_then(|r| r.address),
        ),
    ];
    for (field, address) in addresses {
        let Some(address) = address.filter(|a| !a.is_empty()) else {
            continue;
        };
        let (host, port) = split_host_port(&address);
        let ports = PortSet::new(port.into_iter().collect());
        out.host_ref(
            cx,
            || format!("{}.{field}", path()),
            host,
            Some(&ports),
            false,
        );
    }
}

/// `host:port`, `[v6]:port` or a bare host.
fn split_host_port(address: &str) -> (&str, Option<u16>) {
    if let Some(v6) = address.strip_prefix('[')
        && let Some((host, rest)) = v6.split_once(']')
    {
        return (host, rest.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (address, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_addresses() {
        assert_eq!(
            split_host_port("zipkin.example.com:9411"),
            ("zipkin.example.com", Some(9411))
        );
        assert_eq!(
            split_host_port("[2001:db8::1]:9411"),
            ("2001:db8::1", Some(9411))
        );
        assert_eq!(split_host_port("collector"), ("collector", None));
        assert_eq!(split_host_port("2001:db8::1"), ("2001:db8::1", None));
    }
}
