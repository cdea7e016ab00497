//! Wasm modules the proxy runs: WasmPlugin `url` and TrafficExtension `wasm.url`, its
//! successor. istio-agent in the pod pulls the module, outside the sidecar's capture,
//! so the host must be approved like any other egress host, on the URL's port.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::decision::Code;
use crate::policy::judge::{Context, Findings};
use crate::policy::spec::{Object, Str, null_default};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WasmSpec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    url: Str<'a>,
}

/// The `spec` of a TrafficExtension.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ExtensionSpec<'a> {
    #[serde(borrow)]
    wasm: Option<WasmSpec<'a>>,
}

/// A WasmPlugin.
pub(crate) fn judge_plugin(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(Object { spec, .. }) = out.decoded::<Object<WasmSpec<'_>>>(object.get()) else {
        return;
    };
    module(&spec, "spec.url", cx, out);
}

/// A TrafficExtension.
pub(crate) fn judge_extension(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(Object { spec, .. }) = out.decoded::<Object<ExtensionSpec<'_>>>(object.get()) else {
        return;
    };
    if let Some(wasm) = &spec.wasm {
        module(wasm, "spec.wasm.url", cx, out);
    }
}

/// The module's URL: required, and fetched (`oci` when it names no scheme).
fn module(spec: &WasmSpec<'_>, at: &str, cx: &Context<'_>, out: &mut Findings<'_>) {
    if spec.url.is_empty() {
        out.violation(Code::MissingField, at, "", "url is required");
        return;
    }
    out.fetch(cx, &|| at.to_owned(), &spec.url, "oci", true);
}
