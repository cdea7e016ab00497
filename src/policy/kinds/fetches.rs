//! Objects that make Istio fetch a URL: WasmPlugin `url` and TrafficExtension
//! `wasm.url`, its successor (istio-agent in the pod pulls the module, outside the
//! sidecar's capture), and RequestAuthentication `jwksUri` or,
//! without one, the issuer's OpenID discovery document (istiod fetches them). The host
//! must be approved like any other egress host, on the URL's port.

use serde::Deserialize;

use super::url::{self, UrlError};
use super::{Context, Findings, Str, null_default};
use crate::policy::decision::Code;
use crate::policy::matcher::PortSet;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WasmSpec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    url: Str<'a>,
}

/// The `spec` of a TrafficExtension.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ExtensionSpec<'a> {
    #[serde(borrow)]
    wasm: Option<WasmSpec<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct AuthnSpec<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    jwt_rules: Vec<JwtRule<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct JwtRule<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    issuer: Str<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    jwks_uri: Str<'a>,
    #[serde(borrow, deserialize_with = "null_default")]
    jwks: Str<'a>,
}

pub(super) fn inspect_wasm(spec: &WasmSpec<'_>, cx: &Context<'_>, out: &mut Findings<'_>) {
    if spec.url.is_empty() {
        out.violation(Code::MissingField, "spec.url", "", "url is required");
        return;
    }
    fetch(&spec.url, "oci", || "spec.url".to_owned(), true, cx, out);
}

pub(super) fn inspect_extension(
    spec: &ExtensionSpec<'_>,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    let Some(wasm) = &spec.wasm else { return };
    if wasm.url.is_empty() {
        out.violation(Code::MissingField, "spec.wasm.url", "", "url is required");
        return;
    }
    fetch(
        &wasm.url,
        "oci",
        || "spec.wasm.url".to_owned(),
        true,
        cx,
        out,
    );
}

pub(super) fn inspect_authn(spec: &AuthnSpec<'_>, cx: &Context<'_>, out: &mut Findings<'_>) {
    for (i, rule) in spec.jwt_rules.iter().enumerate() {
        if !out.charge(rule.jwks_uri.len() + rule.issuer.len()) {
            return;
        }
        if !rule.jwks_uri.is_empty() {
            let path = || format!("spec.jwtRules[{i}].jwksUri");
            fetch(&rule.jwks_uri, "https", path, true, cx, out);
        } else if rule.jwks.is_empty() && rule.issuer.contains("://") {
            // istiod discovers the keys at `<issuer>/.well-known/openid-configuration`.
            let path = || format!("spec.jwtRules[{i}].issuer");
            fetch(&rule.issuer, "https", path, false, cx, out);
        }
    }
}

/// Judges the host a URL connects to; `strict` reports a URL that does not parse.
fn fetch(
    raw: &str,
    default_scheme: &str,
    path: impl Fn() -> String,
    strict: bool,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    out.charge(raw.len());
    match url::remote(raw, default_scheme) {
        Ok(remote) => {
            let ports = PortSet::new(vec![remote.port]);
            out.host_ref(cx, path, &remote.host, Some(&ports), false);
        }
        Err(UrlError::Local) => {}
        Err(UrlError::Invalid(why)) if strict => {
            out.record(Code::InvalidHost, &path, raw, why);
        }
        Err(UrlError::Invalid(_)) => {}
    }
}
