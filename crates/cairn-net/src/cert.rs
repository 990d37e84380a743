//! A small cluster certificate authority: make a CA, issue node and client certificates,
//! write key files that are never readable by others.
//!
//! ```
//! use cairn_net::cert::Ca;
//! use cairn_net::Identity;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = Ca::generate("my cluster CA")?;
//! let node = ca.issue_node("node-1", &["10.0.0.1".to_string(), "db1.example".to_string()])?;
//! let identity = Identity::from_pem(&ca.cert_pem(), &node.cert_pem, &node.key_pem)?;
//! assert!(identity.is_node());
//!
//! let client = ca.issue_client("alice")?;
//! let identity = Identity::from_pem(&ca.cert_pem(), &client.cert_pem, &client.key_pem)?;
//! assert!(!identity.is_node());
//! # Ok(())
//! # }
//! ```
//!
//! Keys are ECDSA P-256. Certificates are valid from an hour before they are made (clock
//! skew) for [`CA_VALIDITY`] (the CA) or [`LEAF_VALIDITY`] (nodes and clients).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::NODE_SERVER_NAME;

/// How long a generated CA certificate is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// How long an issued node or client certificate is valid.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
/// How far in the past certificates start being valid, for clocks that are behind.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Why a certificate could not be made or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// rcgen refused (bad name, bad key, bad PEM, signing failed).
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// The CA key does not belong to the CA certificate, or the certificate is not a CA.
    #[error("CA: {0}")]
    Ca(String),
    /// A host name that is neither an IP address nor a valid DNS name.
    #[error("bad host name {0:?} for a certificate")]
    Host(String),
}

/// A certificate authority: its certificate and key. Issues node and client certificates.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

/// A freshly issued certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM. Write it with [`write_private`].
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

impl Ca {
    /// Makes a new CA with a fresh key.
    pub fn generate(common_name: &str) -> Result<Ca, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        // Path length 0: the CA signs leaves only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// Loads an existing CA from its certificate and key; checks that the key is the
    /// certificate's. Certificates issued afterwards chain to `cert_pem` as given.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        check_key_matches(cert_pem, &key)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
        if !matches!(params.is_ca, IsCa::Ca(_)) {
            return Err(CertError::Ca(
                "the certificate is not a CA certificate".into(),
            ));
        }
        // Re-signing the parsed parameters gives a certificate with the same subject, key
        // and key identifier: what issuing needs. The original PEM stays the one to trust.
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// The CA certificate, PEM: what every node and client trusts.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA private key, PEM. Write it with [`write_private`] and keep it off the nodes
    /// if you can.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a node certificate, usable as TLS server and client (extended key usages
    /// serverAuth and clientAuth). Its subject alternative names are [`NODE_SERVER_NAME`],
    /// `localhost` and each of `hosts` (IP addresses become IP names, others DNS names).
    pub fn issue_node(&self, name: &str, hosts: &[String]) -> Result<Issued, CertError> {
        let mut sans = vec![dns(NODE_SERVER_NAME)?, dns("localhost")?];
        for host in hosts {
            let san = host_san(host)?;
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        let usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(name, sans, usages)
    }

    /// Issues a client certificate (extended key usage clientAuth only), common name
    /// `name`, without [`NODE_SERVER_NAME`]: it can call nodes on the client ALPN but can
    /// neither serve nor use the peer ALPN.
    pub fn issue_client(&self, name: &str) -> Result<Issued, CertError> {
        self.issue(name, Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn issue(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<Issued, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.subject_alt_names = sans;
        params.extended_key_usages = usages;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_VALIDITY);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl std::fmt::Debug for Ca {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = SystemTime::now();
    params.not_before = now.checked_sub(BACKDATE).unwrap_or(now).into();
    params.not_after = now.checked_add(validity).unwrap_or(now).into();
}

fn dns(name: &str) -> Result<SanType, CertError> {
    let ia5 = name
        .to_string()
        .try_into()
        .map_err(|_| CertError::Host(name.to_string()))?;
    Ok(SanType::DnsName(ia5))
}

fn host_san(host: &str) -> Result<SanType, CertError> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => dns(host),
    }
}

/// Checks that `key` is the key of the certificate in `cert_pem`, by comparing the raw
/// public key with the end of the certificate's subject public key info (whose last
/// field is the key itself).
fn check_key_matches(cert_pem: &str, key: &KeyPair) -> Result<(), CertError> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| CertError::Ca(format!("CA certificate PEM: {e}")))?;
    let anchor = webpki::anchor_from_trusted_cert(&der)
        .map_err(|e| CertError::Ca(format!("CA certificate: {e}")))?;
    if !anchor
        .subject_public_key_info
        .ends_with(key.public_key_raw())
    {
        return Err(CertError::Ca(
            "the key does not belong to the certificate".into(),
        ));
    }
    Ok(())
}

/// Writes `contents` to `path` readable and writable by the owner only (mode 0600). The
/// file is created with that mode, so it is never readable by others even briefly; an
/// existing file is refused unless `overwrite`, in which case its mode is tightened to 0600
/// before anything is written. For private keys.
pub fn write_private(path: &Path, contents: &str, overwrite: bool) -> std::io::Result<()> {
    write_with_mode(path, contents, overwrite, 0o600)
}

/// Like [`write_private`] with mode 0644: for certificates, which are public.
pub fn write_public(path: &Path, contents: &str, overwrite: bool) -> std::io::Result<()> {
    write_with_mode(path, contents, overwrite, 0o644)
}

fn write_with_mode(path: &Path, contents: &str, overwrite: bool, mode: u32) -> std::io::Result<()> {
    let mut file = open_with_mode(path, overwrite, mode)?;
    set_mode(&file, mode)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

fn open_with_mode(path: &Path, overwrite: bool, mode: u32) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

/// Sets the mode on the open file: a new file may have lost bits to the umask (fine) but an
/// overwritten one keeps its old mode, which may be looser.
fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let current = file.metadata()?.permissions().mode() & 0o777;
        // Only ever remove bits: never widen what the umask narrowed.
        let wanted = current & mode;
        if current != wanted {
            file.set_permissions(std::fs::Permissions::from_mode(wanted))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (file, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_cert_names_and_client_cert_names() {
        let ca = Ca::generate("test CA").unwrap();
        let node = ca
            .issue_node(
                "n1",
                &["127.0.0.1".into(), "db.example".into(), "localhost".into()],
            )
            .unwrap();
        let node_der = CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        assert!(crate::identity::is_node_cert(&node_der));
        let client = ca.issue_client("alice").unwrap();
        let client_der = CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap();
        assert!(!crate::identity::is_node_cert(&client_der));
    }

    #[test]
    fn bad_host_is_an_error() {
        let ca = Ca::generate("test CA").unwrap();
        assert!(matches!(
            ca.issue_node("n1", &["bad host\u{e9}".into()]),
            Err(CertError::Host(_))
        ));
    }

    #[test]
    fn ca_round_trips_through_pem_and_refuses_a_foreign_key() {
        let ca = Ca::generate("test CA").unwrap();
        let again = Ca::from_pem(&ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.key_pem(), ca.key_pem());
        let other = Ca::generate("other CA").unwrap();
        assert!(matches!(
            Ca::from_pem(&ca.cert_pem(), &other.key_pem()),
            Err(CertError::Ca(_))
        ));
    }

    #[test]
    fn a_leaf_is_not_a_ca() {
        let ca = Ca::generate("test CA").unwrap();
        let node = ca.issue_node("n1", &[]).unwrap();
        assert!(Ca::from_pem(&node.cert_pem, &node.key_pem).is_err());
    }
}
