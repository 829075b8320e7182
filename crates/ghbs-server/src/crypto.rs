//! Secrets at rest: GitHub tokens sealed with an AEAD key, API keys stored only as hashes.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ghbs_core::Secret;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Seals and opens GitHub tokens with XChaCha20-Poly1305 (random 192-bit nonces, so no nonce
/// bookkeeping is needed across nodes sharing one key).
#[derive(Clone)]
pub struct TokenSealer {
    cipher: XChaCha20Poly1305,
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("{0}")]
    Key(String),
    #[error("a stored token could not be decrypted: the server's key changed since it was stored (log in again)")]
    Open,
}

impl TokenSealer {
    /// The key from `GHBS_MASTER_KEY` (base64 of 32 bytes) when given, else from
    /// `data_dir/master.key`, created with mode 0600 on first start.
    pub fn load(master_key: Option<&Secret>, data_dir: &Path) -> Result<TokenSealer, CryptoError> {
        let key = match master_key {
            Some(b64) => decode_key(b64.expose().trim())
                .map_err(|e| CryptoError::Key(format!("GHBS_MASTER_KEY is not usable: {e}")))?,
            None => load_or_create_key_file(&data_dir.join("master.key"))?,
        };
        Ok(TokenSealer {
            cipher: XChaCha20Poly1305::new((&key).into()),
        })
    }

    /// nonce (24 bytes) || ciphertext+tag.
    pub fn seal(&self, token: &Secret) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), token.expose().as_bytes())
            .expect("XChaCha20-Poly1305 encryption of a short buffer cannot fail");
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Secret, CryptoError> {
        if sealed.len() < 24 {
            return Err(CryptoError::Open);
        }
        let (nonce, body) = sealed.split_at(24);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), body)
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| CryptoError::Open)
    }
}

fn decode_key(b64: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "expected base64 (e.g. from `openssl rand -base64 32`)".to_string())?;
    bytes
        .try_into()
        .map_err(|v: Vec<u8>| format!("expected 32 bytes, got {}", v.len()))
}

fn load_or_create_key_file(path: &Path) -> Result<[u8; 32], CryptoError> {
    match std::fs::read_to_string(path) {
        Ok(text) => decode_key(text.trim())
            .map_err(|e| CryptoError::Key(format!("key file {} is damaged: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            write_private(
                path,
                base64::engine::general_purpose::STANDARD
                    .encode(key)
                    .as_bytes(),
            )
            .map_err(|e| {
                CryptoError::Key(format!("cannot create key file {}: {e}", path.display()))
            })?;
            Ok(key)
        }
        Err(e) => Err(CryptoError::Key(format!(
            "cannot read key file {}: {e}",
            path.display()
        ))),
    }
}

/// Create a file readable by its owner only, failing if it already exists (another node or a
/// concurrent start must not overwrite a key that may already seal tokens).
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// A new API key: `ghbs_` and 32 random bytes in hex (256 bits).
pub fn new_api_key() -> Secret {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    Secret::new(format!("ghbs_{}", hex::encode(bytes)))
}

/// What the store keeps of an API key: hex SHA-256. Keys are random and long, so a fast hash is
/// enough (no password stretching needed).
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_key_file_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sealer = TokenSealer::load(None, dir.path()).unwrap();
        let sealed = sealer.seal(&Secret::new("ghp_secret"));
        assert!(!sealed.windows(10).any(|w| w == b"ghp_secret"));
        assert_eq!(sealer.open(&sealed).unwrap().expose(), "ghp_secret");
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second start reads the same key.
        let again = TokenSealer::load(None, dir.path()).unwrap();
        assert_eq!(again.open(&sealed).unwrap().expose(), "ghp_secret");
        // Tampering is detected.
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(again.open(&bad).is_err());
    }

    #[test]
    fn env_key_must_be_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let key = |s: &str| Secret::new(s);
        assert!(TokenSealer::load(Some(&key("not base64!")), dir.path()).is_err());
        assert!(TokenSealer::load(Some(&key("AAAA")), dir.path()).is_err());
        let k = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(TokenSealer::load(Some(&key(&k)), dir.path()).is_ok());
    }

    #[test]
    fn api_keys_are_long_and_hashed() {
        let k = new_api_key();
        assert_eq!(k.expose().len(), 5 + 64);
        assert_ne!(new_api_key().expose(), k.expose());
        assert_eq!(hash_api_key(k.expose()).len(), 64);
    }
}
