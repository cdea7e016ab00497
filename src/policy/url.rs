//! The host and port a fetch URL connects to: WasmPlugin modules (fetched by
//! istio-agent from the pod, outside the sidecar's capture) and JWKS documents
//! (fetched by istiod).

/// Where a URL connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The host, as written (an IP literal or a name).
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
}

/// Why a URL has no remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// A local file: nothing is fetched over the network.
    Local,
    /// Not a URL this fetcher accepts.
    Invalid(&'static str),
}

/// Parses an `http`, `https` or `oci` URL. `oci` without a registry host (`oci://name`)
/// means Docker Hub, as for container images; no scheme means `oci`.
pub fn remote(raw: &str, default_scheme: &str) -> Result<Remote, UrlError> {
    let (scheme, rest) = raw.split_once("://").unwrap_or((default_scheme, raw));
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "file" => return Err(UrlError::Local),
        "http" => 80,
        "https" | "oci" => 443,
        _ => return Err(UrlError::Invalid("scheme must be http, https, oci or file")),
    };
    if scheme.eq_ignore_ascii_case("oci") {
        return oci_registry(rest);
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority.is_empty() {
        return Err(UrlError::Invalid("URL has no host"));
    }
    split_host_port(authority, default_port)
}

/// The registry an OCI reference is pulled from, read as go-containerregistry's
/// `name` package reads it (Istio's fetcher drops `oci://` and hands it the rest):
/// the first `/`-separated part is the registry only when the reference has a `/`
/// and that part holds a `.` or a `:`; anything else, `localhost` without a port
/// included, is a repository on Docker Hub. `?` and `#` are not separators there, so
/// a first part holding them (or userinfo) is no registry name and is refused.
fn oci_registry(reference: &str) -> Result<Remote, UrlError> {
    let docker_hub = Remote {
        host: "docker.io".to_owned(),
        port: 443,
    };
    let Some((first, _)) = reference.split_once('/') else {
        return Ok(docker_hub);
    };
    if !first.contains(['.', ':']) {
        return Ok(docker_hub);
    }
    let registry_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']');
    if !first.chars().all(registry_char) {
        return Err(UrlError::Invalid(
            "OCI registry may hold only letters, digits, '.', '-', ':' and an IPv6 literal (write oci://registry.example/repo:tag)",
        ));
    }
    split_host_port(first, 443)
}

fn split_host_port(authority: &str, default_port: u16) -> Result<Remote, UrlError> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6
                .split_once(']')
                .ok_or(UrlError::Invalid("unclosed IPv6 literal"))?;
            (host, rest.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        None | Some("") => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or(UrlError::Invalid("port must be 1-65535"))?,
    };
    if host.is_empty() {
        return Err(UrlError::Invalid("URL has no host"));
    }
    Ok(Remote {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(host: &str, port: u16) -> Result<Remote, UrlError> {
        Ok(Remote {
            host: host.to_owned(),
            port,
        })
    }

    #[test]
    fn finds_where_a_fetch_connects() {
        let cases = [
            (
                "https://plugins.example.net/auth.wasm",
                r("plugins.example.net", 443),
            ),
            ("http://10.0.0.1:8080/x", r("10.0.0.1", 8080)),
            ("oci://ghcr.io/org/plugin:1.0", r("ghcr.io", 443)),
            ("ghcr.io/org/plugin:1.0", r("ghcr.io", 443)),
            ("oci://registry.local:5000/p", r("registry.local", 5000)),
            ("oci://plugin:1.0", r("docker.io", 443)),
            // go-containerregistry has no `localhost` rule: Docker Hub.
            ("oci://localhost/evil/plugin:1", r("docker.io", 443)),
            ("OCI://localhost:5000/p", r("localhost", 5000)),
            // `?` is no separator in a reference: the first part is no registry.
            (
                "oci://api.github.com?x=/org/p",
                Err(UrlError::Invalid(
                    "OCI registry may hold only letters, digits, '.', '-', ':' and an IPv6 literal (write oci://registry.example/repo:tag)",
                )),
            ),
            ("oci://org/plugin?x=a.b/c", r("docker.io", 443)),
            (
                "https://user:pw@[2001:db8::1]:8443/k",
                r("2001:db8::1", 8443),
            ),
            ("file:///opt/filter.wasm", Err(UrlError::Local)),
            (
                "ftp://x.example/y",
                Err(UrlError::Invalid("scheme must be http, https, oci or file")),
            ),
            ("https:///nohost", Err(UrlError::Invalid("URL has no host"))),
            (
                "https://x.example:99999/",
                Err(UrlError::Invalid("port must be 1-65535")),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(remote(url, "oci"), want, "{url}");
        }
    }
}
