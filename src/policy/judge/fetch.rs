//! URLs a component outside the sidecar's capture fetches: WasmPlugin and
//! TrafficExtension modules (istio-agent in the pod) and JWKS documents (istiod). The
//! host the URL connects to is egress on the URL's port. Both fetchers resolve through
//! cluster DNS, so another namespace's Service name is judged as the external host its
//! ExternalName may point at (as Telemetry addresses are).

use super::{Context, EgressRef, Findings, Reach};
use crate::policy::decision::Code;
use crate::policy::matcher::PortSet;
use crate::policy::url::{self, UrlError};

impl Findings<'_> {
    /// Judges the host `raw` connects to (`default_scheme` when it names none);
    /// `strict` reports a URL the fetcher refuses too. A host the fetcher dials but this
    /// crate cannot read is reported either way.
    pub fn fetch(
        &mut self,
        cx: &Context<'_>,
        path: &dyn Fn() -> String,
        raw: &str,
        default_scheme: &str,
        strict: bool,
    ) {
        self.charge(raw.len());
        match url::remote(raw, default_scheme) {
            Ok(remote) => {
                let ports = PortSet::new(vec![remote.port]);
                let r = EgressRef::new(path, &remote.host, Reach::ClusterDns).on(Some(&ports));
                self.egress(cx, r);
            }
            Err(UrlError::Local) => {}
            Err(UrlError::Invalid(why)) if strict => {
                self.record(Code::InvalidHost, path, raw, why);
            }
            // The fetcher refuses it too: nothing is fetched.
            Err(UrlError::Invalid(_)) => {}
            // Fetched from a host not read here: refused whatever the field.
            Err(UrlError::Unreadable(why)) => {
                self.record(Code::InvalidHost, path, raw, why);
            }
        }
    }
}
