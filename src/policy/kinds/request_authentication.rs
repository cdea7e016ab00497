//! RequestAuthentication: istiod fetches each rule's `jwksUri` or, without one (and
//! without inline `jwks`), the issuer's OpenID discovery document. The host must be
//! approved like any other egress host, on the URL's port.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::judge::{Context, Findings};
use crate::policy::spec::{Object, Str, null_default};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec<'a> {
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

pub(crate) fn judge(object: &RawValue, cx: &Context<'_>, out: &mut Findings<'_>) {
    let Some(Object { spec, .. }) = out.decoded::<Object<Spec<'_>>>(object.get()) else {
        return;
    };
    for (i, rule) in spec.jwt_rules.iter().enumerate() {
        if !out.charge(rule.jwks_uri.len() + rule.issuer.len()) {
            return;
        }
        if !rule.jwks_uri.is_empty() {
            let path = || format!("spec.jwtRules[{i}].jwksUri");
            out.fetch(cx, &path, &rule.jwks_uri, "https", true);
        } else if rule.jwks.is_empty() && rule.issuer.contains("://") {
            // istiod discovers the keys at `<issuer>/.well-known/openid-configuration`.
            let path = || format!("spec.jwtRules[{i}].issuer");
            out.fetch(cx, &path, &rule.issuer, "https", false);
        }
    }
}
