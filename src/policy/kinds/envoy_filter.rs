//! EnvoyFilter: a patch of the proxy's own configuration. In a tenant namespace it can
//! add any cluster, listener or route for the namespace's workloads, so it is denied
//! unless the namespace is granted `allowEnvoyFilter`. (EnvoyFilters in the mesh's root
//! namespace apply everywhere; that namespace belongs in `exemptNamespaces`.)

use serde_json::value::RawValue;

use crate::policy::decision::Code;
use crate::policy::judge::{Context, Findings};

pub(crate) fn judge(_object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    if !cx.allowlist.may_envoy_filter(cx.namespace) {
        out.violation(
            Code::EnvoyFilter,
            "spec",
            "",
            &format!(
                "an EnvoyFilter can add any cluster or listener to the proxy; namespace {} is not granted allowEnvoyFilter",
                cx.namespace
            ),
        );
    }
}
