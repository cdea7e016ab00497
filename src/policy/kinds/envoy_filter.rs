//! EnvoyFilter: a patch of the proxy's own configuration. In a tenant namespace it can
//! add any cluster, listener or route for the namespace's workloads, so it is denied
//! unless the namespace is granted `allowEnvoyFilter`. (EnvoyFilters in the mesh's root
//! namespace apply everywhere; that namespace belongs in `exemptNamespaces`.)

use super::{Context, Findings};
use crate::policy::decision::Code;

pub(super) fn inspect(cx: &Context<'_>, out: &mut Findings<'_>) {
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
