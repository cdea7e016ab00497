//! DestinationRule: `spec.host` and every TLS `sni` (top-level, port-level and per
//! subset) are egress. Validity mirrors Istio's `ValidateDestinationRule` for the host,
//! subset names and `exportTo`; `tls.sni` is never validated by Istio, so not here either.

use std::collections::HashSet;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Context, Findings, HostEgress, export_to, null_default};
use crate::policy::decision::Code;
use crate::policy::istio;

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
    workload_selector: Option<IgnoredAny>,
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
    export_to(
        &spec.export_to,
        cx,
        false,
        spec.workload_selector.is_some(),
        out,
    );
    let syntax = istio::destination_rule_host(&spec.host);
    out.host_field(
        cx,
        "spec.host".to_owned(),
        &spec.host,
        syntax,
        true,
        Some(HostEgress::default()),
    );
    if let Some(tp) = &spec.traffic_policy {
        traffic_policy(tp, "spec.trafficPolicy", cx, out);
    }
    let mut names = HashSet::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let path = format!("spec.subsets[{i}]");
        if !names.insert(subset.name.as_str()) {
            out.violation(
                Code::InvalidSubset,
                format!("{path}.name"),
                &subset.name,
                "duplicate subset name",
            );
        }
        out.rule(
            || format!("{path}.name"),
            &subset.name,
            istio::subset_name(&subset.name),
        );
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
    if !sni.is_empty() {
        out.name_ref(cx, path, sni);
    }
}
