//! DestinationRule: `spec.host` and every TLS `sni` (top-level, port-level and per
//! subset) are egress. Validity mirrors Istio's `validateDestinationRule`.

use std::collections::HashSet;

use serde::Deserialize;

use super::{Context, Findings, export_to, null_default};
use crate::policy::decision::Code;
use crate::policy::host::HostPattern;
use crate::policy::{host, istio};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Spec {
    #[serde(deserialize_with = "null_default")]
    host: String,
    traffic_policy: Option<TrafficPolicy>,
    #[serde(deserialize_with = "null_default")]
    subsets: Vec<Subset>,
    #[serde(deserialize_with = "null_default")]
    export_to: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TrafficPolicy {
    tls: Option<Tls>,
    #[serde(deserialize_with = "null_default")]
    port_level_settings: Vec<PortPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PortPolicy {
    tls: Option<Tls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Tls {
    sni: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Subset {
    #[serde(deserialize_with = "null_default")]
    name: String,
    traffic_policy: Option<TrafficPolicy>,
}

pub(super) fn inspect(spec: &Spec, cx: &Context<'_>, out: &mut Findings) {
    export_to(&spec.export_to, cx, out);
    if spec.host.is_empty() {
        out.violation(
            Code::MissingField,
            "spec.host",
            "",
            "destination rule must have a host",
        );
    } else if let Some(h) = out.rule(
        || "spec.host".to_owned(),
        &spec.host,
        istio::wildcard_domain(&spec.host),
    ) {
        out.partial_wildcard(cx, "spec.host", &spec.host, &h, false);
        out.host_ref(cx, "spec.host".to_owned(), &spec.host, h, &[], false);
    }
    if let Some(tp) = &spec.traffic_policy {
        traffic_policy(tp, "spec.trafficPolicy", cx, out);
    }
    let mut names = HashSet::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let path = format!("spec.subsets[{i}]");
        if subset.name.is_empty() {
            out.violation(
                Code::InvalidSubset,
                format!("{path}.name"),
                "",
                "subset name is required",
            );
        } else if let Err(e) = host::check_label(&subset.name) {
            out.violation(
                Code::InvalidSubset,
                format!("{path}.name"),
                &subset.name,
                format!("invalid subset name: {e}"),
            );
        } else if !names.insert(subset.name.as_str()) {
            out.violation(
                Code::InvalidSubset,
                format!("{path}.name"),
                &subset.name,
                "duplicate subset name",
            );
        }
        if let Some(tp) = &subset.traffic_policy {
            traffic_policy(tp, &format!("{path}.trafficPolicy"), cx, out);
        }
    }
}

fn traffic_policy(tp: &TrafficPolicy, base: &str, cx: &Context<'_>, out: &mut Findings) {
    if let Some(sni) = tp.tls.as_ref().and_then(|t| t.sni.as_deref()) {
        sni_ref(sni, format!("{base}.tls.sni"), cx, out);
    }
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        if let Some(sni) = pl.tls.as_ref().and_then(|t| t.sni.as_deref()) {
            sni_ref(
                sni,
                format!("{base}.portLevelSettings[{i}].tls.sni"),
                cx,
                out,
            );
        }
    }
}

/// An SNI is where TLS origination connects. Istio does not validate its syntax, so an
/// unparsable one is not a validity error; it is matched verbatim (only `*` covers it).
fn sni_ref(sni: &str, path: String, cx: &Context<'_>, out: &mut Findings) {
    if sni.is_empty() {
        return;
    }
    let host = sni
        .parse::<HostPattern>()
        .unwrap_or_else(|_| HostPattern::Exact(host::normalize(sni).into_owned().into()));
    out.host_ref(cx, path, sni, host, &[], false);
}
