//! What a node or client presents: the cluster CA, its own certificate chain and key.

use std::fmt;
use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::{NetError, NODE_SERVER_NAME};

/// The PEM files a node or client presents, parsed to DER: the cluster CA certificate(s)
/// it trusts, its own certificate chain (leaf first) and its private key.
pub struct Identity {
    pub(crate) ca_certs: Vec<CertificateDer<'static>>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Parses the three PEM texts. `ca_cert_pem` may hold several CA certificates (all are
    /// trusted, e.g. during a CA rotation); `cert_pem` is the leaf followed by any
    /// intermediates; `key_pem` is a PKCS#8, PKCS#1 or SEC1 private key.
    pub fn from_pem(
        ca_cert_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Identity, NetError> {
        Ok(Identity {
            ca_certs: parse_certs(ca_cert_pem, "CA certificate")?,
            chain: parse_certs(cert_pem, "certificate")?,
            key: parse_key(key_pem)?,
        })
    }

    /// Reads and parses the three PEM files; an error names the file it is about.
    pub fn load(ca_cert: &Path, cert: &Path, key: &Path) -> Result<Identity, NetError> {
        Ok(Identity {
            ca_certs: parse_certs(&read(ca_cert)?, "CA certificate")
                .map_err(|e| e.in_file(ca_cert))?,
            chain: parse_certs(&read(cert)?, "certificate").map_err(|e| e.in_file(cert))?,
            key: parse_key(&read(key)?).map_err(|e| e.in_file(key))?,
        })
    }

    /// Whether the own certificate is a node certificate: valid for [`NODE_SERVER_NAME`],
    /// so it can serve and can use the peer ALPN. Client certificates are not.
    pub fn is_node(&self) -> bool {
        self.chain.first().is_some_and(is_node_cert)
    }
}

impl Clone for Identity {
    fn clone(&self) -> Identity {
        Identity {
            ca_certs: self.ca_certs.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("ca_certs", &self.ca_certs.len())
            .field("chain", &self.chain.len())
            .field("is_node", &self.is_node())
            .finish_non_exhaustive()
    }
}

/// Whether `cert` (a leaf, already verified by TLS) is valid for [`NODE_SERVER_NAME`].
pub(crate) fn is_node_cert(cert: &CertificateDer<'_>) -> bool {
    let Ok(name) = ServerName::try_from(NODE_SERVER_NAME) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .and_then(|leaf| leaf.verify_is_valid_for_subject_name(&name))
        .is_ok()
}

fn read(path: &Path) -> Result<String, NetError> {
    std::fs::read_to_string(path)
        .map_err(|e| NetError::io(format!("reading {}", path.display()), e))
}

fn parse_certs(text: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| NetError::pem(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(NetError::pem(format!(
            "no {what} (BEGIN CERTIFICATE) found"
        )));
    }
    Ok(certs)
}

fn parse_key(text: &str) -> Result<PrivateKeyDer<'static>, NetError> {
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => NetError::pem("no private key (BEGIN PRIVATE KEY) found"),
        other => NetError::pem(format!("private key: {other}")),
    })
}
