//! The node's TLS identity: PEM files from a cluster CA, or a development CA made in the
//! data directory on first start.

use cairn_net::cert::{write_private, write_public, Ca};
use cairn_net::Identity;

use crate::config::{ServerConfig, Tls};
use crate::state::StateDir;
use crate::ServerError;

/// Loads (or, for development TLS, makes) the identity the node presents.
pub(crate) fn identity(config: &ServerConfig, state: &StateDir) -> Result<Identity, ServerError> {
    match &config.tls {
        Tls::Files { ca, cert, key } => {
            Identity::load(ca, cert, key).map_err(|e| ServerError::Net(e.to_string()))
        }
        Tls::Development => development(config, state),
    }
}

fn development(config: &ServerConfig, state: &StateDir) -> Result<Identity, ServerError> {
    let dir = state.tls_dir();
    let (ca_file, cert_file, key_file) = (
        dir.join("ca.pem"),
        dir.join("node.pem"),
        dir.join("node-key.pem"),
    );
    if !(ca_file.exists() && cert_file.exists() && key_file.exists()) {
        let net = |e: String| {
            ServerError::Net(format!(
                "development certificates in {}: {e}",
                dir.display()
            ))
        };
        std::fs::create_dir_all(&dir).map_err(|e| net(e.to_string()))?;
        let ca = Ca::generate("cairn development CA").map_err(|e| net(e.to_string()))?;
        let hosts = vec![config.advertise.ip().to_string()];
        let issued = ca
            .issue_node(&config.name, &hosts)
            .map_err(|e| net(e.to_string()))?;
        write_private(&dir.join("ca-key.pem"), &ca.key_pem(), true)
            .map_err(|e| net(e.to_string()))?;
        write_public(&ca_file, &ca.cert_pem(), true).map_err(|e| net(e.to_string()))?;
        write_private(&key_file, &issued.key_pem, true).map_err(|e| net(e.to_string()))?;
        write_public(&cert_file, &issued.cert_pem, true).map_err(|e| net(e.to_string()))?;
        tracing::info!(dir = %dir.display(), "made a development CA and node certificate");
    }
    Identity::load(&ca_file, &cert_file, &key_file).map_err(|e| ServerError::Net(e.to_string()))
}
