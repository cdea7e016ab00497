//! Self-signed CA and serving certificate, for development (`serve` without
//! `--tls-cert`) and for installs without cert-manager (`egress-guard certs`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::cli::CertsArgs;

/// PEM texts of a CA and a serving certificate it signed.
#[derive(Debug, Clone)]
pub struct CertSet {
    /// CA certificate: the webhook's `caBundle` and what clients trust.
    pub ca_cert: String,
    /// CA private key.
    pub ca_key: String,
    /// Serving certificate.
    pub cert: String,
    /// Serving private key.
    pub key: String,
}

/// File names written into the output directory.
pub const FILES: [&str; 4] = ["ca.crt", "ca.key", "tls.crt", "tls.key"];

/// DNS names a Service `service` in `namespace` is reached by.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Generates a fresh CA (10 years) and a serving certificate valid for `days`.
pub fn generate(dns_names: &[String], ips: &[IpAddr], days: u32) -> Result<CertSet, rcgen::Error> {
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "egress-guard CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - time::Duration::hours(1);
    ca_params.not_after = now + time::Duration::days(3650);
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.distinguished_name.push(
        DnType::CommonName,
        dns_names.first().map_or("egress-guard", String::as_str),
    );
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    let cert = params.signed_by(&key, &ca)?;
    Ok(CertSet {
        ca_cert: ca.pem(),
        ca_key: ca_key_pem,
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Writes the set into `dir` (keys with mode 0600).
pub fn write(dir: &Path, set: &CertSet) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in FILES
        .iter()
        .zip([&set.ca_cert, &set.ca_key, &set.cert, &set.key])
    {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        #[cfg(unix)]
        if name.ends_with(".key") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// For `serve` without `--tls-cert`: reuses `dir/tls.crt` and `dir/tls.key`, or
/// generates a development set for localhost and the in-cluster Service names.
pub fn ensure_dev_certs(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    if cert.exists() && key.exists() {
        tracing::info!(cert = %cert.display(), "using the development certificate in {}", dir.display());
        return Ok((cert, key));
    }
    let mut names = vec!["localhost".to_owned()];
    names.extend(service_dns_names("egress-guard", "egress-guard"));
    let ips = ["127.0.0.1", "::1"].map(|s| s.parse().unwrap_or(IpAddr::from([127, 0, 0, 1])));
    let set = generate(&names, &ips, 365).context("generating a development certificate")?;
    write(dir, &set)
        .with_context(|| format!("writing the development certificate to {}", dir.display()))?;
    tracing::warn!(
        ca = %dir.join("ca.crt").display(),
        "generated a self-signed development certificate; trust it with e.g. `curl --cacert {}`",
        dir.join("ca.crt").display()
    );
    Ok((cert, key))
}

/// `egress-guard certs`: writes a set for the in-cluster Service and prints the caBundle.
pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    let CertsArgs {
        service,
        namespace,
        out,
        days,
        force,
    } = args;
    if !force && let Some(existing) = FILES.iter().map(|f| out.join(f)).find(|p| p.exists()) {
        anyhow::bail!("{} exists; pass --force to overwrite", existing.display());
    }
    let names = service_dns_names(service, namespace);
    let set = generate(&names, &[], *days).context("generating certificates")?;
    write(out, &set).with_context(|| format!("writing to {}", out.display()))?;
    let bundle = base64::engine::general_purpose::STANDARD.encode(&set.ca_cert);
    println!(
        "wrote {} (DNS names: {})",
        FILES.map(|f| out.join(f).display().to_string()).join(", "),
        names.join(", ")
    );
    println!();
    println!("Create the serving Secret:");
    println!(
        "  kubectl -n {namespace} create secret tls {service}-tls --cert {} --key {}",
        out.join("tls.crt").display(),
        out.join("tls.key").display()
    );
    println!("Set the caBundle of both webhook configurations:");
    for kind in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        println!(
            "  kubectl patch {kind} {service} --type=json -p '[{{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"{bundle}\"}}]'"
        );
    }
    println!();
    println!("caBundle: {bundle}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_load_into_rustls() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_dev_certs(dir.path()).unwrap();
        let paths = crate::server::tls::TlsPaths {
            cert,
            key,
            client_ca: None,
        };
        crate::server::tls::server_config(&paths).unwrap();
        let ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
        let (cert2, _) = ensure_dev_certs(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(),
            ca,
            "existing certs are reused"
        );
        assert!(cert2.exists());
    }

    #[test]
    fn service_names_cover_every_form() {
        assert_eq!(
            service_dns_names("eg", "ns"),
            ["eg", "eg.ns", "eg.ns.svc", "eg.ns.svc.cluster.local"]
        );
    }
}
