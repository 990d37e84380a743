//! rustls and quinn crypto configuration: TLS 1.3 only, the ring provider chosen
//! explicitly (never a process-wide default), mutual authentication against the cluster CA.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::{Alpn, Identity, NetConfig, NetError, ALPN_CLIENT, ALPN_PEER};

/// The crypto provider for every config this crate builds.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(identity: &Identity) -> Result<Arc<RootCertStore>, NetError> {
    let mut roots = RootCertStore::empty();
    for cert in &identity.ca_certs {
        roots
            .add(cert.clone())
            .map_err(|e| NetError::pem(format!("CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// The server side: present our chain, require a client certificate signed by our CA, offer
/// both ALPNs. (Which certificates may use the peer ALPN is checked after the handshake.)
pub(crate) fn server_config(
    identity: &Identity,
    config: &NetConfig,
) -> Result<quinn::ServerConfig, NetError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(identity)?, provider())
        .build()
        .map_err(|e| NetError::Tls(format!("client verifier: {e}")))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![ALPN_PEER.to_vec(), ALPN_CLIENT.to_vec()];
    // 0-RTT data could be replayed; every request here may change state.
    tls.max_early_data_size = 0;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(config.transport(true)?);
    Ok(server)
}

/// The client side for one ALPN: trust our CA only, present our chain. Peers and clients
/// dial every node by [`NODE_SERVER_NAME`](crate::NODE_SERVER_NAME).
pub(crate) fn client_config(
    identity: &Identity,
    config: &NetConfig,
    alpn: Alpn,
) -> Result<quinn::ClientConfig, NetError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(identity)?)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![alpn.id().to_vec()];
    tls.enable_early_data = false;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(config.transport(false)?);
    Ok(client)
}
