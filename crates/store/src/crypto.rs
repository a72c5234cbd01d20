//! Encryption of secret values at rest: XChaCha20-Poly1305 with a random 192-bit nonce
//! per value and the value's owner and key as associated data, so a ciphertext cannot
//! be moved to another field.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use rusqlite::{Connection, OptionalExtension};
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::error::{Result, StoreError};
use crate::home;

/// The environment variable holding the secrets key (base64 of 32 bytes).
pub const SECRETS_KEY_ENV: &str = "STEPSTACK_SECRETS_KEY";

/// The key file's name inside the home, used when [`SECRETS_KEY_ENV`] is not set.
pub const KEY_FILE: &str = "secrets.key";

const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
const KEY_CHECK_META: &str = "secrets_key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"stepstack secrets key check";

/// Generates a new random secrets key, base64-encoded, suitable for
/// `STEPSTACK_SECRETS_KEY`.
pub fn generate_secrets_key() -> Result<SecretString> {
    let key = random_key()?;
    Ok(SecretString::from(STANDARD.encode(key.expose_secret())))
}

fn random_key() -> Result<SecretBox<[u8; KEY_LEN]>> {
    let key = chacha20poly1305::Key::try_generate().map_err(|e| {
        StoreError::crypto(format!("the system random number generator failed: {e}"))
    })?;
    let mut bytes = [0u8; KEY_LEN];
    bytes.copy_from_slice(key.as_slice());
    Ok(SecretBox::new(Box::new(bytes)))
}

fn decode_key(encoded: &str, origin: &str) -> Result<SecretBox<[u8; KEY_LEN]>> {
    let bytes = STANDARD.decode(encoded.trim()).map_err(|_| {
        StoreError::crypto(format!(
            "the secrets key in {origin} is not valid base64; it must be 32 random bytes in base64 (e.g. from `openssl rand -base64 32`)"
        ))
    })?;
    let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
        StoreError::crypto(format!(
            "the secrets key in {origin} is {} bytes long; it must be exactly 32 bytes, base64-encoded (e.g. from `openssl rand -base64 32`)",
            bytes.len()
        ))
    })?;
    Ok(SecretBox::new(Box::new(key)))
}

/// Where the key comes from.
enum KeySource {
    /// Given by the environment (already decoded and checked).
    Env(SecretBox<[u8; KEY_LEN]>),
    /// The key file in the home, created on first use.
    File(PathBuf),
}

/// The secrets key, loaded (and the key file created) lazily on first use.
pub(crate) struct Keyring {
    source: KeySource,
    cipher: OnceCell<XChaCha20Poly1305>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            KeySource::Env(_) => format!("env {SECRETS_KEY_ENV}"),
            KeySource::File(path) => format!("file {}", path.display()),
        };
        f.debug_struct("Keyring")
            .field("source", &source)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring using `key` (base64) if given, else the key file in `home`.
    pub(crate) fn new(home: &Path, key: Option<&SecretString>) -> Result<Self> {
        let source = match key {
            Some(key) => KeySource::Env(decode_key(key.expose_secret(), SECRETS_KEY_ENV)?),
            None => KeySource::File(home.join(KEY_FILE)),
        };
        Ok(Keyring {
            source,
            cipher: OnceCell::new(),
        })
    }

    fn origin(&self) -> String {
        match &self.source {
            KeySource::Env(_) => SECRETS_KEY_ENV.to_owned(),
            KeySource::File(path) => path.display().to_string(),
        }
    }

    /// The cipher, checked against the key check stored in `conn`. With `for_write`,
    /// a missing key file is created and a missing key check is stored (the caller
    /// holds a write transaction).
    fn cipher(&self, conn: &Connection, for_write: bool) -> Result<XChaCha20Poly1305> {
        if let Some(cipher) = self.cipher.get() {
            return Ok(cipher.clone());
        }
        let check: Option<Vec<u8>> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [KEY_CHECK_META],
                |r| r.get(0),
            )
            .optional()?;
        let key = match &self.source {
            KeySource::Env(key) => SecretBox::new(Box::new(*key.expose_secret())),
            KeySource::File(path) => load_or_create_key_file(path, check.is_some() || !for_write)?,
        };
        let cipher = XChaCha20Poly1305::new(&(*key.expose_secret()).into());
        match check {
            Some(check) if open(&cipher, &check, KEY_CHECK_META.as_bytes()).is_err() => {
                return Err(StoreError::crypto(format!(
                    "the secrets key from {} is not the key this store's secrets were encrypted with; \
                     set {SECRETS_KEY_ENV} to the original key or restore the original {KEY_FILE}",
                    self.origin()
                )));
            }
            Some(_) => {}
            None if for_write => {
                let sealed = seal(&cipher, KEY_CHECK_PLAINTEXT, KEY_CHECK_META.as_bytes())?;
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    rusqlite::params![KEY_CHECK_META, sealed],
                )?;
                // Not cached: the transaction may still roll back, so the next use
                // reads the check again.
                return Ok(cipher);
            }
            None => {}
        }
        Ok(self.cipher.get_or_init(|| cipher).clone())
    }

    /// Encrypts `plaintext` for the field `aad` (e.g. `connector/<id>/<key>`).
    pub(crate) fn encrypt(
        &self,
        conn: &Connection,
        aad: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let cipher = self.cipher(conn, true)?;
        seal(&cipher, plaintext, aad.as_bytes())
    }

    /// Decrypts a value that [`Keyring::encrypt`] produced for `aad`; `what` names the
    /// value in error messages (never its content).
    pub(crate) fn decrypt(
        &self,
        conn: &Connection,
        aad: &str,
        sealed: &[u8],
        what: &str,
    ) -> Result<SecretString> {
        let cipher = self.cipher(conn, false)?;
        let plaintext = open(&cipher, sealed, aad.as_bytes()).map_err(|()| {
            StoreError::crypto(format!(
                "cannot decrypt {what}: the secrets key from {} does not match the one it was stored with, \
                 or the stored value is corrupt; set {SECRETS_KEY_ENV} to the original key or register the value again",
                self.origin()
            ))
        })?;
        String::from_utf8(plaintext)
            .map(SecretString::from)
            .map_err(|_| {
                StoreError::crypto(format!(
                    "cannot decrypt {what}: the stored value is not UTF-8"
                ))
            })
    }
}

fn seal(cipher: &XChaCha20Poly1305, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let nonce = XNonce::try_generate().map_err(|e| {
        StoreError::crypto(format!("the system random number generator failed: {e}"))
    })?;
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| StoreError::crypto("encryption failed"))?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(nonce.as_slice());
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

fn open(cipher: &XChaCha20Poly1305, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, ()> {
    if sealed.len() < 1 + NONCE_LEN || sealed[0] != FORMAT_VERSION {
        return Err(());
    }
    let nonce = XNonce::try_from(&sealed[1..1 + NONCE_LEN]).map_err(|_| ())?;
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: &sealed[1 + NONCE_LEN..],
                aad,
            },
        )
        .map_err(|_| ())
}

/// Reads the key file, or creates it (mode 0600, atomically) unless `must_exist`.
fn load_or_create_key_file(path: &Path, must_exist: bool) -> Result<SecretBox<[u8; KEY_LEN]>> {
    match std::fs::read_to_string(path) {
        Ok(text) => return decode_key(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StoreError::io(
                "could not read the secrets key file",
                path,
                e,
            ));
        }
    }
    if must_exist {
        return Err(StoreError::crypto(format!(
            "the secrets key file {} is missing but the store holds secrets encrypted with it; \
             restore it or set {SECRETS_KEY_ENV} to the original key",
            path.display()
        )));
    }
    let key = random_key()?;
    let encoded = SecretString::from(format!("{}\n", STANDARD.encode(key.expose_secret())));
    if home::create_private_file_atomically(path, encoded.expose_secret().as_bytes())? {
        tracing::info!(path = %path.display(), "created a new secrets key file");
        Ok(key)
    } else {
        // Another process created it first: use theirs.
        let text = std::fs::read_to_string(path)
            .map_err(|e| StoreError::io("could not read the secrets key file", path, e))?;
        decode_key(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
            .unwrap();
        conn
    }

    #[test]
    fn round_trips_and_binds_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let conn = meta_db();
        let keys = Keyring::new(dir.path(), None).unwrap();
        let sealed = keys
            .encrypt(&conn, "secret/1/password", b"hunter2")
            .unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        let back = keys
            .decrypt(&conn, "secret/1/password", &sealed, "x")
            .unwrap();
        assert_eq!(back.expose_secret(), "hunter2");
        // Same plaintext, different nonce.
        assert_ne!(
            sealed,
            keys.encrypt(&conn, "secret/1/password", b"hunter2")
                .unwrap()
        );
        // Moved to another field: refused.
        let err = keys
            .decrypt(&conn, "secret/2/password", &sealed, "x")
            .unwrap_err();
        assert!(matches!(err, StoreError::Crypto { .. }));
        // The key file exists and is private.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn bad_env_keys_are_rejected_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let err = Keyring::new(dir.path(), Some(&SecretString::from("not base64!"))).unwrap_err();
        assert!(err.to_string().contains("not valid base64"), "{err}");
        let short = SecretString::from(STANDARD.encode([0u8; 16]));
        let err = Keyring::new(dir.path(), Some(&short)).unwrap_err();
        assert!(err.to_string().contains("16 bytes long"), "{err}");
    }

    #[test]
    fn a_wrong_key_is_detected_by_the_key_check() {
        let dir = tempfile::tempdir().unwrap();
        let conn = meta_db();
        let a = Keyring::new(dir.path(), Some(&generate_secrets_key().unwrap())).unwrap();
        a.encrypt(&conn, "f", b"v").unwrap();
        let b = Keyring::new(dir.path(), Some(&generate_secrets_key().unwrap())).unwrap();
        let err = b.encrypt(&conn, "f", b"v").unwrap_err();
        assert!(err.to_string().contains("is not the key"), "{err}");
        // A missing key file is not silently replaced once secrets exist.
        let c = Keyring::new(dir.path(), None).unwrap();
        let err = c.encrypt(&conn, "f", b"v").unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
    }
}
