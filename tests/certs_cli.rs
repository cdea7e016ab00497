//! `egress-guard certs` as a user runs it: the files it writes, their modes, what it
//! prints, `--force`, planted symlinks and `--days` bounds.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

const SERVICE: &str = "eg";
const NAMESPACE: &str = "guard";

/// Runs `egress-guard certs --service eg --namespace guard --out OUT EXTRA…` under
/// `umask 000`, so that every mode checked below is the one the binary asked for.
fn certs(out: &Path, extra: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(r#"umask 000 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_egress-guard"))
        .args([
            "certs",
            "--service",
            SERVICE,
            "--namespace",
            NAMESPACE,
            "--out",
        ])
        .arg(out)
        .args(extra)
        .env_clear()
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    path.symlink_metadata().unwrap().permissions().mode() & 0o777
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

/// Verifies `tls.crt` against `ca.crt` as a TLS client of `name` would.
fn verify_serving_cert(dir: &Path, name: &str) -> Result<(), rustls::Error> {
    egress_guard::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&read(dir, "ca.crt")).unwrap())
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder(roots.into())
        .build()
        .unwrap();
    let leaf = CertificateDer::from_pem_slice(&read(dir, "tls.crt")).unwrap();
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

#[test]
fn writes_a_ca_and_a_serving_certificate_for_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let run = certs(&out, &["--days", "10"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));

    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    for key in ["ca.key", "tls.key"] {
        assert_eq!(mode(&out.join(key)), 0o600, "{key}");
        PrivateKeyDer::from_pem_slice(&read(&out, key)).unwrap();
    }
    for cert in ["ca.crt", "tls.crt"] {
        assert_eq!(mode(&out.join(cert)), 0o644, "{cert}");
    }

    // The serving certificate chains to the CA for every name of the Service.
    for name in egress_guard::certs::service_dns_names(SERVICE, NAMESPACE) {
        verify_serving_cert(&out, &name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(
        verify_serving_cert(&out, "other.guard.svc").is_err(),
        "names beyond the Service are not covered"
    );
    let leaf = CertificateDer::from_pem_slice(&read(&out, "tls.crt")).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    let sans: Vec<String> = parsed
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        sans,
        [
            "DNSName(eg)",
            "DNSName(eg.guard)",
            "DNSName(eg.guard.svc)",
            "DNSName(eg.guard.svc.cluster.local)"
        ]
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let not_after = parsed.validity().not_after.timestamp();
    assert!(
        (now + 9 * 86_400..=now + 10 * 86_400 + 60).contains(&not_after),
        "--days 10: {not_after}"
    );

    let stdout = String::from_utf8(run.stdout).unwrap();
    let bundle = base64::engine::general_purpose::STANDARD.encode(read(&out, "ca.crt"));
    assert!(
        stdout.lines().last() == Some(&format!("caBundle: {bundle}")),
        "{stdout}"
    );
    // Plain words about the CA key left behind, and where it is.
    let ca_key = out.join("ca.key").display().to_string();
    assert!(
        stdout.contains(&format!(
            "The CA private key was left on disk at {ca_key} (mode 0600)"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("delete it or move it offline"), "{stdout}");
}

#[test]
fn refuses_to_overwrite_without_force_and_overwrites_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    assert_eq!(certs(&out, &[]).status.code(), Some(0));
    let first = read(&out, "ca.crt");

    let again = certs(&out, &[]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("exists; pass --force to overwrite"),
        "{stderr}"
    );
    assert_eq!(read(&out, "ca.crt"), first, "nothing was overwritten");

    // A key left readable by an earlier tool is replaced by a 0600 one.
    std::fs::set_permissions(out.join("tls.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let forced = certs(&out, &["--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
    assert_ne!(read(&out, "ca.crt"), first, "a new CA");
    assert_eq!(mode(&out.join("tls.key")), 0o600);
    assert_eq!(mode(&out.join("ca.key")), 0o600);
    verify_serving_cert(&out, "eg.guard.svc").unwrap();
}

#[test]
fn a_symlink_planted_at_a_key_path_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    std::fs::create_dir(&out).unwrap();
    // A dangling link: `Path::exists` says false, yet writing through it would create
    // the target.
    let stolen = dir.path().join("stolen.key");
    std::os::unix::fs::symlink(&stolen, out.join("tls.key")).unwrap();
    let refused = certs(&out, &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("tls.key exists"),
        "{}",
        text(&refused)
    );
    assert!(!stolen.exists(), "the link target was not created");

    // A link to an existing file, replaced with --force: the target keeps its content.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "do not touch").unwrap();
    std::fs::remove_file(out.join("tls.key")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("ca.key")).unwrap();
    let forced = certs(&out, &["--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
    let ca_key = out.join("ca.key");
    assert!(!ca_key.symlink_metadata().unwrap().is_symlink());
    assert_eq!(mode(&ca_key), 0o600);
    PrivateKeyDer::from_pem_slice(&read(&out, "ca.key")).unwrap();
    assert!(!stolen.exists());
}

#[test]
fn days_out_of_range_are_usage_errors() {
    for days in ["0", "3651", "4294967295", "4294967296", "-1"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        let run = certs(&out, &[&format!("--days={days}")]);
        assert_eq!(run.status.code(), Some(2), "--days {days}: {}", text(&run));
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains("--days"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out.exists(), "--days {days}: nothing written");
    }
    let dir = tempfile::tempdir().unwrap();
    let run = certs(&dir.path().join("certs"), &["--days", "3650"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "the upper bound is valid: {}",
        text(&run)
    );
}
