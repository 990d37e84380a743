//! Key and certificate files: modes, refusal to overwrite, loading with file names in
//! errors.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use cairn_net::cert::{self, Ca};
use cairn_net::{Identity, NetError};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("cairn-net-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn private_files_are_created_0600_and_not_overwritten() {
    let dir = TempDir::new("private");
    let path = dir.0.join("node.key");
    cert::write_private(&path, "secret", false).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");

    let error = cert::write_private(&path, "other", false).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");

    // Overwriting a file that was left world-readable tightens it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    cert::write_private(&path, "new", true).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
}

#[test]
fn public_files_are_readable_by_others_but_not_writable() {
    let dir = TempDir::new("public");
    let path = dir.0.join("ca.pem");
    cert::write_public(&path, "cert", false).unwrap();
    let mode = mode(&path);
    assert_eq!(mode & 0o600, 0o600);
    assert_eq!(mode & 0o022, 0, "{mode:o}");
}

#[test]
fn identity_loads_from_files_and_errors_name_the_file() {
    let dir = TempDir::new("load");
    let ca = Ca::generate("test CA").unwrap();
    let issued = ca.issue_node("n1", &[]).unwrap();
    let (ca_path, cert_path, key_path) = (
        dir.0.join("ca.pem"),
        dir.0.join("node.pem"),
        dir.0.join("node.key"),
    );
    cert::write_public(&ca_path, &ca.cert_pem(), false).unwrap();
    cert::write_public(&cert_path, &issued.cert_pem, false).unwrap();
    cert::write_private(&key_path, &issued.key_pem, false).unwrap();

    let identity = Identity::load(&ca_path, &cert_path, &key_path).unwrap();
    assert!(identity.is_node());

    let missing = dir.0.join("missing.pem");
    let error = Identity::load(&missing, &cert_path, &key_path).unwrap_err();
    assert!(matches!(error, NetError::Io { .. }), "{error}");
    assert!(error.to_string().contains("missing.pem"), "{error}");

    // A certificate where the key should be.
    let error = Identity::load(&ca_path, &cert_path, &cert_path).unwrap_err();
    assert!(
        matches!(&error, NetError::Pem { file: Some(f), .. } if *f == cert_path),
        "{error}"
    );
    assert!(error.to_string().contains("node.pem"), "{error}");
}

#[test]
fn ca_survives_a_round_trip_through_files() {
    let ca = Ca::generate("test CA").unwrap();
    let reloaded = Ca::from_pem(&ca.cert_pem(), &ca.key_pem()).unwrap();
    // A certificate issued by the reloaded CA is trusted by holders of the original PEM.
    let issued = reloaded.issue_node("n1", &[]).unwrap();
    let identity = Identity::from_pem(&ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap();
    assert!(identity.is_node());
}
