//! Default timeouts for VirtualService http routes, as RFC 6902 operations. The
//! VirtualService's judge summarises its routes ([`Routes`]); this module owns that
//! summary, the opt-out annotation and the patch. Only routes without a `timeout` are
//! touched, so applying the patch and evaluating again yields no patch.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::Value;

use super::allowlist::TimeoutScope;
use super::duration::Duration;

/// The annotation that overrides the default timeout on one VirtualService.
pub const ANNOTATION: &str = "egress-guard.io/default-timeout";

/// What the mutation needs to know about one VirtualService.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// The value of [`ANNOTATION`], if set.
    pub annotation: Option<String>,
    /// The http routes that may get a timeout (forwarding, without one).
    pub http: Vec<HttpRouteInfo>,
}

/// What the timeout mutation needs to know about one `http[]` route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRouteInfo {
    /// Index in `spec.http`.
    pub index: usize,
    /// The route already sets `timeout` (any value, even an invalid one).
    pub has_timeout: bool,
    /// The route forwards somewhere (has `route` destinations); redirects, direct
    /// responses and delegates have nothing to time out.
    pub forwards: bool,
    /// At least one destination leaves the mesh.
    pub external: bool,
}

/// What the annotation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    /// `"none"`: add no timeouts to this VirtualService.
    OptOut,
    /// Use this timeout instead of the allowlist's.
    Timeout(Duration),
}

/// Parses the annotation value: `none` or an Istio-valid duration.
pub fn parse_override(raw: &str) -> Result<Override, String> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("none") {
        return Ok(Override::OptOut);
    }
    let d: Duration = raw.parse().map_err(|e| format!("{e}"))?;
    d.check_istio().map_err(str::to_owned)?;
    Ok(Override::Timeout(d))
}

/// The routes that get `timeout` and the patch that adds it.
pub fn plan(
    routes: &[HttpRouteInfo],
    timeout: Duration,
    scope: TimeoutScope,
) -> (Patch, Vec<String>) {
    let value = Value::String(timeout.to_string());
    let mut ops = Vec::new();
    let mut paths = Vec::new();
    for r in routes {
        let in_scope = match scope {
            TimeoutScope::All => true,
            TimeoutScope::External => r.external,
        };
        if r.has_timeout || !r.forwards || !in_scope {
            continue;
        }
        let index = r.index.to_string();
        ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["spec", "http", index.as_str(), "timeout"]),
            value: value.clone(),
        }));
        paths.push(format!("spec.http[{}]", r.index));
    }
    (Patch(ops), paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(index: usize, has_timeout: bool, forwards: bool, external: bool) -> HttpRouteInfo {
        HttpRouteInfo {
            index,
            has_timeout,
            forwards,
            external,
        }
    }

    #[test]
    fn adds_timeouts_only_where_missing_and_in_scope() {
        let routes = [
            route(0, false, true, true),
            route(1, true, true, true),
            route(2, false, true, false),
            route(3, false, false, true),
        ];
        let t = Duration::from_millis(15_000);
        let (patch, paths) = plan(&routes, t, TimeoutScope::External);
        assert_eq!(paths, ["spec.http[0]"]);
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::json!([{"op": "add", "path": "/spec/http/0/timeout", "value": "15s"}])
        );
        let (_, all) = plan(&routes, t, TimeoutScope::All);
        assert_eq!(all, ["spec.http[0]", "spec.http[2]"]);
    }

    #[test]
    fn parses_overrides() {
        assert_eq!(parse_override("none"), Ok(Override::OptOut));
        assert_eq!(parse_override(" None "), Ok(Override::OptOut));
        assert_eq!(
            parse_override("3s"),
            Ok(Override::Timeout(Duration::from_millis(3000)))
        );
        assert!(parse_override("0s").is_err());
        assert!(parse_override("soon").is_err());
        assert!(parse_override("0.5ms").is_err());
    }
}
