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

use clap::Args;

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
    // `days` comes from the command line: an out-of-range date is an error, not a panic.
    params.not_after = now
        .checked_add(time::Duration::days(i64::from(days)))
        .ok_or(rcgen::Error::Time)?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(CertSet {
        ca_cert: ca.pem(),
        ca_key: ca_key_pem,
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Writes the set into `dir`, replacing files already there (see [`write_files`]).
pub fn write(dir: &Path, set: &CertSet) -> anyhow::Result<()> {
    write_files(dir, set, true)
}

/// Creates the four files in `dir`, each anew (`O_CREAT|O_EXCL`) and with its final mode
/// from the start: private keys 0600, certificates 0644 (less any umask). `O_EXCL` does
/// not follow a symlink at the path, so a link planted at `dir/tls.key` cannot redirect
/// the write. With `replace`, an existing entry is first removed (a symlink itself, not
/// its target); without it, an existing entry is an error.
fn write_files(dir: &Path, set: &CertSet, replace: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in FILES
        .iter()
        .zip([&set.ca_cert, &set.ca_key, &set.cert, &set.key])
    {
        let path = dir.join(name);
        if replace {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", path.display()));
                }
                _ => {}
            }
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(if name.ends_with(".key") { 0o600 } else { 0o644 });
        }
        let mut file = options
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
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
    // `symlink_metadata`: a dangling symlink counts as existing, unlike `Path::exists`.
    if !force
        && let Some(existing) = FILES
            .iter()
            .map(|f| out.join(f))
            .find(|p| p.symlink_metadata().is_ok())
    {
        anyhow::bail!("{} exists; pass --force to overwrite", existing.display());
    }
    let names = service_dns_names(service, namespace);
    let set = generate(&names, &[], *days).context("generating certificates")?;
    write_files(out, &set, *force).with_context(|| format!("writing to {}", out.display()))?;
    let bundle = base64::engine::general_purpose::STANDARD.encode(&set.ca_cert);
    let ca_key = out.join("ca.key");
    println!(
        "wrote {} (DNS names: {})",
        FILES.map(|f| out.join(f).display().to_string()).join(", "),
        names.join(", ")
    );
    println!();
    println!(
        "The CA private key was left on disk at {} (mode 0600). Whoever holds it can issue",
        ca_key.display()
    );
    println!("certificates that the API server trusts for this webhook. Once the Secret and the");
    println!(
        "caBundle are in place, delete it or move it offline: it is needed only to sign a new"
    );
    println!("serving certificate.");
    println!();
    // ca.crt travels in the Secret: `serve --register-webhooks` sets it as the caBundle.
    println!("Create the serving Secret (with ca.crt, as cert-manager writes it):");
    println!(
        "  kubectl -n {namespace} create secret generic {service}-tls --type=kubernetes.io/tls --from-file=tls.crt={} --from-file=tls.key={} --from-file=ca.crt={}",
        out.join("tls.crt").display(),
        out.join("tls.key").display(),
        out.join("ca.crt").display()
    );
    println!();
    println!(
        "serve --register-webhooks puts it on every webhook entry itself. If you register the"
    );
    println!("configurations yourself, set the caBundle on every entry of both:");
    for line in patch_every_entry(service, &bundle).lines() {
        println!("  {line}");
    }
    println!();
    println!("caBundle: {bundle}");
    Ok(())
}

/// A shell loop that sets `caBundle` on every entry of both configurations named
/// `name`: the validating one has several entries, and one left without it fails every
/// call it matches with `x509: unknown authority`.
fn patch_every_entry(name: &str, bundle: &str) -> String {
    format!(
        r#"for kind in validatingwebhookconfiguration mutatingwebhookconfiguration; do
  n=$(kubectl get "$kind" {name} -o go-template='{{{{len .webhooks}}}}')
  for i in $(seq 0 $((n - 1))); do
    kubectl patch "$kind" {name} --type=json -p "[{{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"{bundle}\"}}]"
  done
done"#
    )
}

/// `certs` flags.
#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Service name of the webhook (for the certificate's DNS names).
    #[arg(long, default_value = "egress-guard")]
    pub service: String,
    /// Namespace of the webhook Service.
    #[arg(long, default_value = "egress-guard")]
    pub namespace: String,
    /// Output directory.
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// Validity of the serving certificate in days (at most the CA's ten years).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
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
    fn an_unrepresentable_expiry_is_an_error_not_a_panic() {
        assert!(matches!(
            generate(&["x".to_owned()], &[], u32::MAX),
            Err(rcgen::Error::Time)
        ));
    }

    #[cfg(unix)]
    #[test]
    fn replacing_does_not_follow_a_planted_symlink() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&victim, out.join("tls.key")).unwrap();
        let set = generate(&["x".to_owned()], &[], 1).unwrap();

        assert!(
            write_files(&out, &set, false).is_err(),
            "no replace: refused"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

        write(&out, &set).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let key = out.join("tls.key");
        assert!(!key.symlink_metadata().unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&key).unwrap(), set.key);
        let mode = key.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn service_names_cover_every_form() {
        assert_eq!(
            service_dns_names("eg", "ns"),
            ["eg", "eg.ns", "eg.ns.svc", "eg.ns.svc.cluster.local"]
        );
    }
}
