//! The `proxy.istio.io/config` annotation: a ProxyConfig the injector applies to the
//! pod's proxy (and to `istio-init`). Read like Istio reads it (YAML or JSON, field
//! names in camelCase or as in the proto): its telemetry addresses (tracing, StatsD,
//! metrics and access-log services) are egress from the proxy; `discoveryAddress` hands
//! the proxy to another control plane; `interceptionMode: NONE` turns capture off;
//! `proxyMetadata` is also the environment of `istio-init`, whose capture settings
//! `istio-iptables` reads from it; custom bootstrap files replace what the proxy is.
//!
//! The ProxyConfig resource (`networking.istio.io`) reaches the injector the same way:
//! its `environmentVariables` become `proxyMetadata` of the pods it selects.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::pod::injected;
use crate::policy::decision::Code;
use crate::policy::istio;
use crate::policy::judge::{Context, EgressRef, Findings, Reach};
use crate::policy::matcher::PortSet;
use crate::policy::spec::{Keys, Object, Pairs, Str, null_default};
use crate::policy::yaml;

/// The annotation.
pub(crate) const ANNOTATION: &str = "proxy.istio.io/config";
/// A ProxyConfig larger than this is not read (real ones are a few lines).
const MAX_LEN: usize = 64 * 1024;

/// Fields that point the proxy at files of the tenant's choosing.
const REPLACING: [(&str, &str); 3] = [
    ("customConfigFile", "custom_config_file"),
    (
        "proxyBootstrapTemplatePath",
        "proxy_bootstrap_template_path",
    ),
    ("binaryPath", "binary_path"),
];

/// Telemetry addresses: `(path, camelCase, proto name)`, each step of the path.
const ADDRESSES: [&[(&str, &str)]; 7] = [
    &[("statsdUdpAddress", "statsd_udp_address")],
    &[
        ("envoyMetricsService", "envoy_metrics_service"),
        ("address", "address"),
    ],
    &[
        ("envoyAccessLogService", "envoy_access_log_service"),
        ("address", "address"),
    ],
    &[
        ("tracing", "tracing"),
        ("zipkin", "zipkin"),
        ("address", "address"),
    ],
    &[
        ("tracing", "tracing"),
        ("lightstep", "lightstep"),
        ("address", "address"),
    ],
    &[
        ("tracing", "tracing"),
        ("datadog", "datadog"),
        ("address", "address"),
    ],
    &[
        ("tracing", "tracing"),
        ("openCensusAgent", "open_census_agent"),
        ("address", "address"),
    ],
];

/// What a proxy config may cost to read: real ones are a few dozen nodes, no aliases.
const LIMITS: yaml::Limits = yaml::Limits {
    depth: 16,
    nodes: 10_000,
    replayed: 1_000,
};

/// The field of `map` under either spelling, with the spelling found. Istio reads the
/// proto name, then the JSON name over it: the camelCase spelling wins.
fn field<'m>(
    map: &'m Map<String, Value>,
    (camel, snake): (&str, &str),
) -> Option<(&'m str, &'m Value)> {
    map.get_key_value(camel)
        .or_else(|| map.get_key_value(snake))
        .map(|(k, v)| (k.as_str(), v))
}

/// Judges the annotation if the object carries one; `base` prefixes the path.
pub(crate) fn judge_annotation<K: Keys>(
    annotations: &Pairs<K>,
    base: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let Some(raw) = annotations.get(ANNOTATION) else {
        return;
    };
    let path = || format!("{}metadata.annotations[{ANNOTATION}]", base());
    let unreadable = |why: &str, out: &mut Findings<'_>| {
        out.record(
            Code::ProxyReplaced,
            path,
            "",
            &format!("the proxy config cannot be checked ({why}); the injector would apply it"),
        );
    };
    if raw.len() > MAX_LEN {
        return unreadable("larger than 64 KiB", out);
    }
    out.charge(raw.len() * 16);
    let config = match yaml::from_str::<Value>(raw, LIMITS) {
        Ok(Value::Object(m)) => m,
        Ok(Value::Null) => return,
        Ok(_) => return unreadable("not a mapping", out),
        Err(e) => return unreadable(&e.message, out),
    };
    let opt_out_granted = cx.allowlist.may_opt_out(cx.namespace);
    if !opt_out_granted {
        capture_fields(&config, &path, cx, out);
    }
    for steps in ADDRESSES {
        let mut at = &config;
        let mut written = Vec::with_capacity(steps.len());
        let mut value = None;
        for (i, step) in steps.iter().enumerate() {
            let Some((k, v)) = field(at, *step) else {
                break;
            };
            written.push(k);
            match v {
                Value::Object(m) if i + 1 < steps.len() => at = m,
                Value::String(s) if i + 1 == steps.len() => value = Some(s.as_str()),
                _ => break,
            }
        }
        let Some(address) = value.filter(|a| !a.is_empty()) else {
            continue;
        };
        let at = || format!("{}.{}", path(), written.join("."));
        let (host, port) = match split_host_port(address) {
            Ok(split) => split,
            Err(why) => {
                out.record(Code::InvalidHost, at, address, why);
                continue;
            }
        };
        let ports = PortSet::new(port.into_iter().collect());
        out.egress(
            cx,
            EgressRef::new(&at, host, Reach::ClusterDns).on(Some(&ports)),
        );
    }
}

/// The `spec` of a ProxyConfig resource.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ResourceSpec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    environment_variables: BTreeMap<Str<'a>, Option<Str<'a>>>,
}

/// A ProxyConfig resource: its environment reaches `istio-init` of the pods it selects.
pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(Object { spec, .. }) = out.decoded::<Object<ResourceSpec<'_>>>(object.get()) else {
        return;
    };
    if cx.allowlist.may_opt_out(cx.namespace) {
        return;
    }
    let vars = spec
        .environment_variables
        .iter()
        .map(|(k, v)| (&**k, v.as_deref()));
    capture_environment(
        vars,
        &|name| format!("spec.environmentVariables.{name}"),
        cx,
        out,
    );
}

/// The ProxyConfig fields that switch capture off or replace the proxy.
fn capture_fields(
    config: &Map<String, Value>,
    path: &dyn Fn() -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    if let Some((k, v)) = field(config, ("discoveryAddress", "discovery_address"))
        && let Some(d) = v.as_str().filter(|d| !d.is_empty())
    {
        out.record(
            Code::ProxyReplaced,
            || format!("{}.{k}", path()),
            d,
            "points the proxy at another control plane, which then decides where traffic goes",
        );
    }
    // jsonpb takes enum numbers too: NONE is 2.
    if let Some((k, v)) = field(config, ("interceptionMode", "interception_mode"))
        && (v.as_str() == Some("NONE") || v.as_u64() == Some(2))
    {
        out.record(
            Code::CaptureExcluded,
            || format!("{}.{k}", path()),
            "NONE",
            "interception mode NONE installs no capture rules",
        );
    }
    for step in REPLACING {
        if let Some((k, v)) = field(config, step) {
            out.record(
                Code::ProxyReplaced,
                || format!("{}.{k}", path()),
                v.as_str().unwrap_or_default(),
                "runs the proxy from files of the workload's choosing",
            );
        }
    }
    if let Some((k, Value::Object(env))) = field(config, ("proxyMetadata", "proxy_metadata")) {
        // A value that is not a string is held against the variable as unknown.
        let vars = env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        capture_environment(vars, &|name| format!("{}.{k}.{name}", path()), cx, out);
    }
}

/// Environment given to the proxy and `istio-init` (`proxyMetadata`): the variables
/// `istio-iptables` reads to take traffic out of capture, and the ones that hand the
/// proxy another control plane, bootstrap or CA. Node metadata (`ISTIO_META_*`) and
/// pilot-agent's own settings (drain times, `OUTPUT_CERTS`, …) are the workload's.
pub(crate) fn capture_environment<'k>(
    vars: impl Iterator<Item = (&'k str, Option<&'k str>)>,
    path: &dyn Fn(&str) -> String,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    for (key, value) in vars.filter(|(k, _)| !k.starts_with("ISTIO_META_")) {
        if injected::redirects_proxy(key) {
            out.violation(
                Code::ProxyReplaced,
                path(key),
                key,
                "hands the proxy another control plane, bootstrap or certificate authority, which then decides where traffic goes",
            );
        } else if injected::weakens_capture(key, value, cx) {
            out.violation(
                Code::CaptureExcluded,
                path(key),
                key,
                "istio-iptables reads this setting from istio-init's environment and takes traffic out of capture with it",
            );
        }
    }
}

/// `host:port`, `[v6]:port` or a bare host, split as Go's `net.SplitHostPort` splits
/// it. istio-agent writes host and port into the bootstrap JSON unescaped
/// (`addressConverter` in pkg/bootstrap/option/convert.go), so Envoy reads a `"` or a
/// JSON escape in either as JSON (`\u0000` would end the name it resolves): only a
/// plain name or an IP literal, and a decimal port, are judged.
fn split_host_port(address: &str) -> Result<(&str, Option<u16>), &'static str> {
    const PORT: &str = "the port must be a number from 0 to 65535";
    if istio::parse_ip(address).is_some() && !address.contains('%') {
        return Ok((address, None));
    }
    let (host, port) = match address.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']').ok_or("unclosed IPv6 literal")?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err("brackets must hold an IPv6 address (without zone)");
            }
            let port = match rest {
                "" => None,
                _ => Some(rest.strip_prefix(':').ok_or(PORT)?),
            };
            (host, port)
        }
        None => {
            let (host, port) = match address.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (address, None),
            };
            let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
            if host.is_empty() || !host.bytes().all(plain) {
                return Err("the host must be a DNS name or an IP address");
            }
            (host, port)
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| PORT)?)
        }
        Some(_) => return Err(PORT),
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_addresses() {
        assert_eq!(
            split_host_port("zipkin.example.com:9411"),
            Ok(("zipkin.example.com", Some(9411)))
        );
        assert_eq!(
            split_host_port("[2001:db8::1]:9411"),
            Ok(("2001:db8::1", Some(9411)))
        );
        assert_eq!(split_host_port("collector"), Ok(("collector", None)));
        assert_eq!(split_host_port("2001:db8::1"), Ok(("2001:db8::1", None)));
        assert_eq!(
            split_host_port("Zipkin.Example.com:09411"),
            Ok(("Zipkin.Example.com", Some(9411)))
        );
    }

    /// The bootstrap is JSON with host and port pasted in: what Envoy would decode
    /// differently from the text is refused, and so is what Go cannot split.
    #[test]
    fn refuses_addresses_envoy_reads_otherwise() {
        let host = Err("the host must be a DNS name or an IP address");
        let port = Err("the port must be a number from 0 to 65535");
        for (address, want) in [
            // JSON escapes: Envoy resolves "evil.example\0...", c-ares "evil.example".
            (r"evil.example\u0000.googleapis.com:9411", host),
            (r"\u0065vil.example:9411", host),
            (
                r#"[evil.example", "address": "x.googleapis.com]:9411"#,
                Err("brackets must hold an IPv6 address (without zone)"),
            ),
            ("collector.googleapis.com:9411}", port),
            ("collector.googleapis.com:+9411", port),
            ("collector.googleapis.com:", port),
            ("collector.googleapis.com:65536", port),
            ("a:b:9411", host),
            (":9411", host),
            ("%65vil.example:9411", host),
            (
                "[fe80::1%eth0]:9411",
                Err("brackets must hold an IPv6 address (without zone)"),
            ),
            ("[::1]x", port),
        ] {
            assert_eq!(split_host_port(address), want, "{address}");
        }
    }

    #[test]
    fn camel_case_wins_over_the_proto_name() {
        let m: Map<String, Value> = yaml::from_str(
            "discovery_address: \"\"\ndiscoveryAddress: evil:15012\n",
            LIMITS,
        )
        .unwrap();
        let (k, v) = field(&m, ("discoveryAddress", "discovery_address")).unwrap();
        assert_eq!((k, v.as_str()), ("discoveryAddress", Some("evil:15012")));
    }
}
