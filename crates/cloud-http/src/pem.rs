//! PEM decoding through `rustls-pki-types` (re-exported by rustls).

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{HResult, HttpError};

/// `pem` with every line trimmed: PEM pasted into YAML or a form is often indented.
fn trimmed(pem: &str) -> String {
    pem.lines().map(str::trim).collect::<Vec<_>>().join("\n")
}

/// The DER certificates of a PEM bundle; an error when it holds none or a block is not
/// valid PEM.
pub fn pem_certificates(pem: &str) -> HResult<Vec<Vec<u8>>> {
    let certs = CertificateDer::pem_slice_iter(trimmed(pem).as_bytes())
        .map(|cert| cert.map(|c| c.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HttpError::InvalidCertificate {
            reason: format!("it is not valid PEM ({e})"),
        })?;
    if certs.is_empty() {
        return Err(HttpError::InvalidCertificate {
            reason: "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM document: PKCS#8 (`PRIVATE KEY`), PKCS#1
/// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`). Encrypted keys are refused: decrypting
/// them would need OpenSSL's ciphers, which this build does not carry.
pub fn pem_private_key(pem: &str) -> HResult<PrivateKeyDer<'static>> {
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || pem.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(HttpError::InvalidKey {
            reason: "the private key is encrypted with a password, which is not supported; decrypt it first (`openssl pkcs8 -in key.pem -nocrypt -topk8`, or `openssl pkcs12 -in cert.pfx -nodes` for a PFX file)".to_owned(),
        });
    }
    // pki-types' error could quote a line of the document: not shown.
    PrivateKeyDer::from_pem_slice(trimmed(pem).as_bytes()).map_err(|e| HttpError::InvalidKey {
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "it holds no PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)".to_owned()
            }
            _ => "its private key is not valid PEM".to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_decoded_and_other_blocks_skipped() {
        let pem = "junk\n-----BEGIN PRIVATE KEY-----\nAQID\n-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n  -----BEGIN CERTIFICATE-----\r\nAQ==\r\n-----END CERTIFICATE-----\r\n";
        assert_eq!(pem_certificates(pem).unwrap(), vec![vec![0, 0, 0], vec![1]]);
        let err = pem_certificates("not a certificate").unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let err =
            pem_certificates("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
                .unwrap_err();
        assert!(err.to_string().contains("not valid PEM"), "{err}");
    }

    #[test]
    fn private_keys_are_found_and_encrypted_ones_refused() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN RSA PRIVATE KEY-----\nAQID\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(
            pem_private_key(pem).unwrap(),
            PrivateKeyDer::Pkcs1(k) if k.secret_pkcs1_der() == [1, 2, 3]
        ));
        let err = pem_private_key(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAQID\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
        let err = pem_private_key("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(err.to_string().contains("no PEM private key"), "{err}");
    }
}
