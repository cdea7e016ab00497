//! One module per kind (or per family of kinds that share a shape): each decodes the
//! fields egress-guard reads (typed, borrowed from the object's JSON, with the `spec`
//! vocabulary), applies Istio's validity rules for them, and judges every egress
//! reference with its field path as it is found (`judge`). Every judge has the same
//! shape, `fn(&RawValue, &Context, &mut Findings)`, and is named by its kind's row in
//! the kinds table (`policy::kind`); this file only lists the modules.
//!
//! Kind modules import `judge` and `spec`, and sibling kinds whose shape they share
//! (workloads use the pod's), never this file or the table. Their behaviour is pinned
//! by `tests.rs` here and by the attack and ordinary corpora in `tests/bypass/`
//! (`pod-*`, `deployment-*`, … for the workload kinds).

pub(crate) mod backend;
pub(crate) mod configmap;
pub(crate) mod destination_rule;
pub(crate) mod endpoints;
pub(crate) mod envoy_filter;
pub(crate) mod gateway;
pub(crate) mod network_policy;
pub(crate) mod pod;
pub(crate) mod proxy_config;
pub(crate) mod request_authentication;
pub(crate) mod service;
pub(crate) mod service_entry;
pub(crate) mod sidecar;
pub(crate) mod virtual_service;
pub(crate) mod wasm;
pub(crate) mod workload;
pub(crate) mod workload_entry;

#[cfg(test)]
mod tests;
