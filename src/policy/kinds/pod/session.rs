//! `kubectl exec` and `kubectl attach` (CONNECT `pods/exec`, `pods/attach`): a session
//! in a running container. In the proxy's container it runs as the proxy, whose traffic
//! the capture rules let through, so it is a way out for any command (EG309).
//!
//! The review carries the options (`PodExecOptions`, `PodAttachOptions`), not the pod:
//! the proxy's container is told by name. The injector's containers and the proxy of the
//! gateways and waypoints istiod deploys are all named so (`istio-proxy`, or
//! `agentgateway`); a tenant's own container of such a name is refused at creation
//! (a template's customises the injected one). Without a container name the apiserver
//! picks the pod's only container, which in a gateway's or waypoint's pod is the proxy:
//! kubectl always names one, so a session that names none is asked to.
//!
//! `pods/portforward` is not judged: it carries connections into the pod (to its
//! loopback, e.g. the proxy's admin port), not from it; the admin API adds no route out.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::ops::ControlFlow;

use super::{AGENTGATEWAY, injected};
use crate::policy::decision::Code;
use crate::policy::judge::{Context, Findings};
use crate::policy::spec::{Str, Streamed, null_default};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Options<'a> {
    #[serde(borrow, deserialize_with = "null_default")]
    container: Str<'a>,
    #[serde(borrow)]
    command: Streamed<'a, Str<'a>>,
}

/// Judges a session (`exec` or `attach`, as `subresource`) into a pod's container.
pub(crate) fn judge(
    object: &RawValue,
    subresource: &str,
    cx: &Context<'_>,
    out: &mut Findings<'_>,
) {
    // Capture is the namespace's own business there.
    if cx.allowlist.may_opt_out(cx.namespace) {
        return;
    }
    let Some(o) = out.decoded::<Options<'_>>(object.get()) else {
        return;
    };
    let name = &*o.container;
    if name.is_empty() {
        out.record(
            Code::ProxySession,
            || "container".to_owned(),
            "",
            "names no container: the apiserver then picks the pod's only one, which in a gateway's or waypoint's pod is the proxy; name it (kubectl -c)",
        );
        return;
    }
    if !injected::NAMES.contains(&name) && name != AGENTGATEWAY {
        return;
    }
    if subresource == "exec" && reads_admin_api(&o.command) {
        return;
    }
    out.record(
        Code::ProxySession,
        || "container".to_owned(),
        name,
        &format!(
            "{subresource} into the proxy's container: the session runs as the proxy, whose traffic the capture rules let through (only `pilot-agent request GET …`, istioctl's read of the proxy's admin API, is allowed)"
        ),
    );
}

/// True for `pilot-agent request GET <path>`: a read of the local proxy's admin API
/// (what istioctl runs), which opens no connection out of the pod.
fn reads_admin_api(command: &Streamed<'_, Str<'_>>) -> bool {
    let mut words: Vec<String> = Vec::new();
    let walked = command.walk(&String::new, |_, w| {
        words.push(w.to_string());
        if words.len() > 4 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    walked.is_ok()
        && words.len() == 4
        && matches!(
            words[0].as_str(),
            "pilot-agent" | "/usr/local/bin/pilot-agent"
        )
        && words[1] == "request"
        && words[2] == "GET"
        && !words[3].starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(json: &str) -> bool {
        let o: Options<'_> = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
        reads_admin_api(&o.command)
    }

    #[test]
    fn only_a_read_of_the_admin_api_is_let_into_the_proxy() {
        assert!(command(
            r#"{"command":["pilot-agent","request","GET","config_dump"]}"#
        ));
        for not in [
            r#"{"command":["pilot-agent","request","POST","quitquitquit"]}"#,
            r#"{"command":["pilot-agent","request","GET","stats","--debug-port","80"]}"#,
            r#"{"command":["pilot-agent","request","GET","--debug-port=80"]}"#,
            r#"{"command":["curl","https://evil.example.net"]}"#,
            r#"{"command":["sh","-c","pilot-agent request GET x; curl y"]}"#,
            r#"{}"#,
        ] {
            assert!(!command(not), "{not}");
        }
    }
}
