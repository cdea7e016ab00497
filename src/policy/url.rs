//! The host and port a fetch URL connects to: WasmPlugin modules (fetched by
//! istio-agent from the pod, outside the sidecar's capture) and JWKS documents
//! (fetched by istiod). Both parse the URL with Go's `net/url`, so this reads it as
//! that parser does: where the two could disagree on the host, the URL is refused.

/// Where a URL connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The host: a name as written, or an IP literal without brackets or zone (an
    /// IPv4-mapped address as IPv4).
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
}

/// Why a URL has no remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// A local file: nothing is fetched over the network.
    Local,
    /// Not a URL the fetcher accepts: it refuses it too, so nothing is fetched.
    Invalid(&'static str),
    /// A URL the fetcher accepts but whose host is not read here as the fetcher reads
    /// it (Go decodes percent-escapes and maps non-ASCII names through IDNA before it
    /// dials): refused, even where the field need not hold a URL.
    Unreadable(&'static str),
}

/// Parses an `http`, `https` or `oci` URL as Go's `net/url.Parse` does (istiod and
/// istio-agent parse every one with it), refusing what Go refuses and what it accepts
/// but this crate cannot read as Go then dials. `oci` without a registry host
/// (`oci://name`) means Docker Hub, as for container images; no scheme means
/// `default_scheme`.
pub fn remote(raw: &str, default_scheme: &str) -> Result<Remote, UrlError> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(UrlError::Invalid("URL holds a control character"));
    }
    // Go cuts the fragment, then the query, before it reads anything else.
    let before_query = raw.split(['#', '?']).next().unwrap_or_default();
    let (scheme, hier) = match go_scheme(before_query)? {
        Some((scheme, rest)) => (scheme, rest.strip_prefix("//")),
        // istiod names the scheme and re-serialises the URL, so a path without one
        // reaches the fetcher as `scheme://path`: its first segment is the authority.
        None => {
            let first = before_query.split('/').next().unwrap_or_default();
            if first.contains(':') {
                return Err(UrlError::Invalid(
                    "first path segment of a URL without scheme holds ':'",
                ));
            }
            let rest = before_query.strip_prefix("//").unwrap_or(before_query);
            (default_scheme, Some(rest))
        }
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "file" => return Err(UrlError::Local),
        "http" => 80,
        "https" | "oci" => 443,
        _ => return Err(UrlError::Invalid("scheme must be http, https, oci or file")),
    };
    // `scheme:path` and `scheme:/path` name no host: the fetch fails.
    let hier = hier.ok_or(UrlError::Invalid("URL has no host"))?;
    let (authority, path) = hier.split_at(hier.find('/').unwrap_or(hier.len()));
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => {
            if !userinfo.bytes().all(userinfo_byte) {
                return Err(UrlError::Invalid(
                    "userinfo may hold only letters, digits and -._:~!$&'()*+,;=%@",
                ));
            }
            host_port
        }
        None => authority,
    };
    let (host, port) = split_host_port(host_port)?;
    if host.name.is_empty() {
        return Err(UrlError::Invalid("URL has no host"));
    }
    if !scheme.eq_ignore_ascii_case("oci") {
        return Ok(Remote {
            host: host.name,
            port: port.unwrap_or(default_port),
        });
    }
    if host.zoned {
        return Err(UrlError::Invalid("an OCI registry has no IPv6 zone"));
    }
    Ok(oci_registry(host_port, path, host.name, port))
}

/// The registry istio-agent pulls from: it hands go-containerregistry `u.Host +
/// u.Path`, whose first `/`-separated part is the registry only when a path follows
/// and that part holds a `.` or a `:`; anything else, `localhost` without a port
/// included, is a repository on Docker Hub.
fn oci_registry(host_port: &str, path: &str, host: String, port: Option<u16>) -> Remote {
    if path.is_empty() || !host_port.contains(['.', ':']) {
        return Remote {
            host: "docker.io".to_owned(),
            port: 443,
        };
    }
    Remote {
        host,
        port: port.unwrap_or(443),
    }
}

/// Go's `getScheme`: a letter, then letters, digits, `+`, `-` or `.`, up to a `:`.
/// `None` when the text starts otherwise or a character outside those comes first.
fn go_scheme(raw: &str) -> Result<Option<(&str, &str)>, UrlError> {
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b':' if i == 0 => return Err(UrlError::Invalid("missing protocol scheme")),
            b':' => return Ok(Some((&raw[..i], &raw[i + 1..]))),
            b if b.is_ascii_alphabetic() => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Go's `validUserinfo`.
fn userinfo_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b':'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
                | b'@'
        )
}

/// A host as Go leaves it: a name, or an IP literal without brackets or zone (an
/// IPv4-mapped IPv6 address as IPv4).
struct Host {
    name: String,
    zoned: bool,
}

/// Go's `parseHost`, then what this crate reads of the result. Go splits the port at
/// the last `:` (after the last `]` for an IPv6 literal) and accepts only digits.
fn split_host_port(authority: &str) -> Result<(Host, Option<u16>), UrlError> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (inside, after) = v6
                .rsplit_once(']')
                .ok_or(UrlError::Invalid("unclosed IPv6 literal"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or(UrlError::Invalid("only :port may follow an IPv6 literal"))?,
                ),
            };
            // RFC 6874: `%25` starts the zone, which picks an interface, not a peer.
            let (addr, zoned) = match inside.split_once("%25") {
                Some((addr, _)) => (addr, true),
                None => (inside, false),
            };
            let ip: std::net::Ipv6Addr = addr
                .parse()
                .map_err(|_| UrlError::Unreadable("brackets must hold an IPv6 address"))?;
            let name = match ip.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => ip.to_string(),
            };
            (Host { name, zoned }, port)
        }
        None => {
            let (name, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            check_name(name)?;
            let name = name.to_owned();
            (Host { name, zoned: false }, port)
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(
            p.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| p.parse::<u16>().ok())
                .flatten()
                .filter(|p| *p > 0)
                .ok_or(UrlError::Invalid("port must be 1-65535"))?,
        ),
    };
    Ok((host, port))
}

/// Go's `unescape(host, encodeHost)` accepts a host that percent-escapes a non-ASCII
/// byte or `%`, holds raw non-ASCII, or holds sub-delimiters; net/http then maps the
/// decoded name through IDNA. Only plain DNS names and IPv4 literals are read here:
/// what Go refuses is invalid, the rest unreadable.
fn check_name(name: &str) -> Result<(), UrlError> {
    let b = name.as_bytes();
    let mut unreadable = None;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let Some(hex) = hex else {
                    return Err(UrlError::Invalid("malformed percent-escape in host"));
                };
                if hex[0] < b'8' && hex != b"25" {
                    return Err(UrlError::Invalid(
                        "host may percent-escape only non-ASCII bytes",
                    ));
                }
                unreadable = unreadable.or(Some(NOT_ASCII));
                i += 3;
                continue;
            }
            c if c >= 0x80 => unreadable = unreadable.or(Some(NOT_ASCII)),
            c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_') => {}
            b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            | b':' | b'[' | b']' | b'<' | b'>' | b'"' => {
                unreadable =
                    unreadable.or(Some("host may hold only letters, digits, '-', '_' and '.'"));
            }
            _ => {
                return Err(UrlError::Invalid(
                    "host holds a character Go refuses (space, \\, ^, {, |, ...)",
                ));
            }
        }
        i += 1;
    }
    unreadable.map_or(Ok(()), |why| Err(UrlError::Unreadable(why)))
}

const NOT_ASCII: &str =
    "host is percent-encoded or not ASCII; write it in ASCII (xn-- for an internationalised name)";

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
            ("oci://plugin", r("docker.io", 443)),
            // go-containerregistry has no `localhost` rule: Docker Hub.
            ("oci://localhost/evil/plugin:1", r("docker.io", 443)),
            ("OCI://localhost:5000/p", r("localhost", 5000)),
            // Go cuts the query before the reference is read: no path, Docker Hub.
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

    fn invalid(why: &'static str) -> Result<Remote, UrlError> {
        Err(UrlError::Invalid(why))
    }

    fn unreadable(why: &'static str) -> Result<Remote, UrlError> {
        Err(UrlError::Unreadable(why))
    }

    /// Hosts as Go's `net/url.Parse` reads them (istiod and istio-agent parse every
    /// fetch URL with it): either the host Go dials, or a refusal.
    #[test]
    fn reads_hosts_as_go_net_url_does() {
        let cases = [
            // Go lowercases the scheme; the host is compared case-insensitively later.
            ("HTTPS://API.GitHub.com/k", r("API.GitHub.com", 443)),
            ("Http://x.example/k", r("x.example", 80)),
            ("FILE:///opt/f.wasm", Err(UrlError::Local)),
            // The last '@' ends the userinfo.
            (
                "https://api.github.com@x@evil.example/k",
                r("evil.example", 443),
            ),
            (
                "https://evil.example#@api.github.com",
                r("evil.example", 443),
            ),
            (
                "https://evil.example?@api.github.com",
                r("evil.example", 443),
            ),
            // A backslash is neither a separator nor allowed in userinfo or host (a
            // WHATWG parser reads it as '/').
            (
                "https://evil.example\\@api.github.com/k",
                invalid("userinfo may hold only letters, digits and -._:~!$&'()*+,;=%@"),
            ),
            (
                "https://api.github.com\\evil.example/k",
                invalid("host holds a character Go refuses (space, \\, ^, {, |, ...)"),
            ),
            // Go refuses a percent-escape of an ASCII byte in a host...
            (
                "https://%65vil.example/k",
                invalid("host may percent-escape only non-ASCII bytes"),
            ),
            (
                "https://evil.example%2f.api.github.com/",
                invalid("host may percent-escape only non-ASCII bytes"),
            ),
            (
                "https://evil%zz.example/",
                invalid("malformed percent-escape in host"),
            ),
            // ...but decodes one of a non-ASCII byte, and net/http maps the name through
            // IDNA: not read here.
            (
                "https://%C3%A9vil.googleapis.com/k",
                unreadable(
                    "host is percent-encoded or not ASCII; write it in ASCII (xn-- for an internationalised name)",
                ),
            ),
            (
                "https://\u{ff45}vil.example/k",
                unreadable(
                    "host is percent-encoded or not ASCII; write it in ASCII (xn-- for an internationalised name)",
                ),
            ),
            (
                "https://evil.example%25.googleapis.com/k",
                unreadable(
                    "host is percent-encoded or not ASCII; write it in ASCII (xn-- for an internationalised name)",
                ),
            ),
            // Sub-delimiters Go lets through; no resolver reads them as one name.
            (
                "https://*.googleapis.com/k",
                unreadable("host may hold only letters, digits, '-', '_' and '.'"),
            ),
            // IPv6: the zone is no part of the address; a mapped address is IPv4.
            ("http://[fe80::1%25eth0]:8080/", r("fe80::1", 8080)),
            ("http://[::ffff:203.0.113.5]/", r("203.0.113.5", 80)),
            ("http://[2001:db8::1]/", r("2001:db8::1", 80)),
            (
                "https://[api.github.com]/k",
                unreadable("brackets must hold an IPv6 address"),
            ),
            (
                "http://[::1]evil.example/",
                invalid("only :port may follow an IPv6 literal"),
            ),
            ("http://[::1/", invalid("unclosed IPv6 literal")),
            // Ports: digits only (no sign), 1-65535; empty is the scheme's.
            (
                "https://api.github.com:+443/",
                invalid("port must be 1-65535"),
            ),
            ("https://api.github.com:/k", r("api.github.com", 443)),
            ("https://api.github.com:0443/k", r("api.github.com", 443)),
            ("http://x.example:0/", invalid("port must be 1-65535")),
            ("http://x.example:65536/", invalid("port must be 1-65535")),
            (
                "http://a:b:80/",
                unreadable("host may hold only letters, digits, '-', '_' and '.'"),
            ),
            // No host.
            ("http:///x", invalid("URL has no host")),
            ("http://:80/", invalid("URL has no host")),
            ("http://user@/x", invalid("URL has no host")),
            ("https:/evil.example/k", invalid("URL has no host")),
            ("https:evil.example/k", invalid("URL has no host")),
            ("://evil.example/", invalid("missing protocol scheme")),
            // Control characters: Go refuses the whole URL; a space in the host too.
            (
                "https://api.github.com\t.evil.example/",
                invalid("URL holds a control character"),
            ),
            (
                "https://api.github.com /k",
                invalid("host holds a character Go refuses (space, \\, ^, {, |, ...)"),
            ),
            (
                " https://evil.example/k",
                invalid("first path segment of a URL without scheme holds ':'"),
            ),
            // A trailing dot and upper case are kept: the judge normalises names.
            ("https://api.github.com./k", r("api.github.com.", 443)),
        ];
        for (url, want) in cases {
            assert_eq!(remote(url, "oci"), want, "{url}");
        }
    }

    /// WasmPlugin URLs: istiod parses the URL, names the scheme `oci` when there is
    /// none and hands istio-agent `u.String()`; the agent parses that and pulls
    /// `u.Host + u.Path`, which go-containerregistry reads.
    #[test]
    fn reads_oci_references_after_go_parses_them() {
        let cases = [
            // Scheme-relative: istiod keeps the authority.
            ("//evil.example/org/p:1", r("evil.example", 443)),
            ("//api.github.com@evil.example/p", r("evil.example", 443)),
            // Without a scheme the path becomes the authority once re-serialised.
            ("api.github.com@evil.example/p", r("evil.example", 443)),
            // Userinfo is dropped by Go before the reference is read.
            ("oci://user@ghcr.io/org/p:1", r("ghcr.io", 443)),
            // Query and fragment are cut by Go: a host alone is a Docker Hub repository.
            ("oci://api.github.com?x=/org/p", r("docker.io", 443)),
            ("oci://ghcr.io#/evil.example/p", r("docker.io", 443)),
            // `plugin:1.0` is no host:port for Go.
            ("oci://plugin:1.0", invalid("port must be 1-65535")),
            ("oci:evil.example/p", invalid("URL has no host")),
            ("///evil.example/p", invalid("URL has no host")),
            (
                "oci://%65vil.example/p",
                invalid("host may percent-escape only non-ASCII bytes"),
            ),
            (
                "oci://[fe80::1%25eth0]:5000/p",
                invalid("an OCI registry has no IPv6 zone"),
            ),
            ("oci://[::1]:5000/p", r("::1", 5000)),
            (
                "1.2.3.4:5000/p",
                invalid("first path segment of a URL without scheme holds ':'"),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(remote(url, "oci"), want, "{url}");
        }
    }
}
