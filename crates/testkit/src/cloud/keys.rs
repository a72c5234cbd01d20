//! Pre-generated RSA keys the fakes hand out (Google service-account keys, Entra ID
//! client certificates), and the public half of each for verifying their signatures.

use base64::Engine as _;
use ring::signature::{KeyPair as _, RsaKeyPair};

/// Pre-generated 2048-bit RSA keys (PKCS#8 PEM) the fakes hand out as service-account
/// and client-certificate keys: `ring`, the RSA implementation already in the build,
/// cannot generate RSA keys, and generating them with a pure-Rust bignum crate takes many
/// seconds in debug builds. Each key handed out gets a fresh random key id; signatures
/// are verified for real.
pub(super) const KEY_POOL: [&str; 2] = [
    "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC0ohQKRgk7VNN/
w18Qss/bXCrL90KsFuPM9mH99A5B7jDWaxSe7N2f1rL6THiNruMcRsjqvxuXiM01
w9zv9Dwcp0aygmddZaPHvQ7brFnFVpBawOwkj/Q6pnOgw+zc5eixhfSCOA2mnENq
SjNhaJaZ74zKmx4fH3jQAv8s+/XFuwOT1E7FjLsdG4X9Cleni6M0z5Dm4LE+Xrxy
VjuMs1lNm3uPClya9fvT3MnR5/U/3vAOf6kP33obQS/Sffs7+/bX2YfOB8bEbzgV
S0wMYZYkIk3X2jObM3RKwMePGrpuCM3FTnXTsrKPu3diLbkAv4Bswrnp0QbO8eKz
i0VgbvlvAgMBAAECggEAL1HgXxqe04Cy0V8MmfLF+gjIm1tAh5WNgsWuwRj83S+5
coplwgZ6PqO/ikubLz6391Hh04FSCJ4JaELRr7izQKxfnGcGDhUQ1UQFTu31LHmz
Ylr04dUmXXD6jIyXEf1Wup7FgZGOne2EyaT7ldKQ1W3IW9FMEEot24xVbeLprS0S
heTHVKsUQQolnKPtOSHFurk26dd21qcaRyI7ZHfKiPQSrAjdheInF2soZO6Su0tQ
HHwCd8pdvukD+ulDTFDazEhwQN85TwCRjL2btP+13zaCxt5Nvk+2s16qV/9HNnWO
9mRtbdCRtbTTuLaTq255ZdyP9Ahtp+2IXEPL51QtXQKBgQDhUBFkmEOOo+0j1s9F
hrNeL8gJ5zUv1bRrGyE6cL+uVc6io1wkZRN1j5okJNAvpTQbbeGDvOLADVwEGNst
dIYbTRdEeHBloy2/45m2jpk3IIrST44VvUTGImUzMIcRrLGyad+uicuMSNAI21Ce
5cPwTUi3Mm0ABWDAZOuJARTwLQKBgQDNPCy0hTXGj+oeUn5Z9hhOnW2sXWrbJi2L
FICeJi99qDu7OUT/wO12S73xGizLQ89VjRrY8gX0xvl1eecQOp2w0eNss0rl5tvI
cM9JmZ2In9idNAx/QbARlzGDKsn6GUvfYNbxL2BQ8NpHFid63OnSRzcQFxOZ3zUd
HwDVfPx1iwKBgQCuWiE7cMBGbv+gzidSq+u9JMhtMWds/rhAcZwC9yC9LVVbcYJp
/3VRcbBb68jWNcbeuubZ5J6q8yuTWBCzWgo0sjEhIPoJDH7okJ1wMWTKzfneyQUw
OWgw0ojxVcoPmU1gvKEFFUhX5Dhnwh7e9vnqyENO0EycyYyXFQFW4WlseQKBgCh0
MgOrNjxbZbRwYkNtRMFKOrH8//EOh2+grPF/aWEFZjCzSyx2ZNgqedgqZqXySc39
MEuO+SmUhttnGeqTAz41QPTOKndCmBPcWJ+TTf/+Mf5aohP7aK8u9C18o69OiSwQ
tI153yxVLVFRxpprLROrwejEA7MS0i9ZSxrJtiGdAoGAKrHnmRg9EZmpw9UtJy7T
JgpYWGhudGca8vCXBLmWjwRmwmPWR9/qTvaZ+NqOd9FTavRcZQGf9EwsgOnbCSwe
kvR6rCZYdp19RAUFEPCHqO/riaDjBuIZj38G8iGCpMJF3glQbOSAIrYtGpE/15GF
lbmLFJxUFiNboUC+cnQXliM=
-----END PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDCdv2Lv/uX4m36
2tnroBqtDNSMT+iBNR6Dcdv9T6WoDxETmgznrkk91esbPtgFYOweeyK9V+v3KpZC
K1cYOI9MXoA448bRk7u0Ccm/yRn+GSM8qYnLgA2TadbjKiWD9K+N5cfgYniy0cZz
ruLifjU/O/dntOZ5sEp4BzPbNv7c0hPM729VpCyxU/edcT/NFBspskDP3//edp1Z
hhMHV/jsJklmgqdyZAjpAn2iuIeMgwo1mBu3nftr2LWmakonPM74IHtaWVT+VnHt
upO3battAK2fznNWq1ezXzePLFTPt1O7e///mCwTrz66Ff2XZgim6AyXRFK6S4XD
x4BfEskTAgMBAAECggEAPmFrPgwsyfEhtInFxBcM15w5BnWPsPr4OdQpbJ3DFyEW
KkKNhzhaWFKp44iKRVdtBu4bG7/7esMXhkxe2O8z0Jyz5wvyOEJ6wOsu462//8nS
iuAbysLeF/6opyBa/nRcaFlgf7M24q32Sh+8ukkgDZPP7l2SXVDW4p/024pNwUm3
V1I8rxIvwHO3CciSS8KtYMoN66lXXa7SiN/4xOKj9QAu6rqCmABxaVG/Msa1wDoW
h6QuP9n7MsW1pZMEI6ap9Xk9O6DMbydmPdzTxZ8rvdh3zKE2dlkfORf3gaEcH5OR
K3cbTeA4fGR4PJ0DozixhYhL1wHoRKQuMRA/5XNUWQKBgQDg3xZqNGLnpF9YPeqF
UsQeQdui6SZH1mKE5eCXvAGEhYbq/4MgiqO/fcDabCK9GQHx9Hin0sdfUazSCItp
kuEqygrpZu7FyIcU7eCTvw/kxM3Qqn0qro9AtVeNhFsTM97qisH368MnQP8qZ+an
SfNy84OAORqTOpYOEYr5Z2KbLQKBgQDdYl0eGfl/9LFpNAKLa9iplX3DhRkgXXAd
keBG9WxKS/Pwo4BL2iL6O+KpZ6848oOIe3FVR7nfAaXWjBJdnlI+zbx/d7I1fVcu
qYboVDHffGtYUty2ACSxLTbLbLntiqeuWykgW+C6lWzXe6g9qlGQQTv7Unz/8h6q
+76UXbSdPwKBgQDewD388G201l9YEuU4MjdxXX2LD/dKm/Q1f10OET9Tnc17BaZH
2u2/53rdItb6iEYj/i5y19mE82wFFk+7QbLoZwGOGNeXdj9RHR4kXNQKomTaObgJ
Sqc+yyOyXJS3Hd/IZ7EivBkxzjG1OP0DY77TdKMjpe1MQHGZ+Ai5a48C9QKBgQDO
GGtdwYqfT1n1+YBA8TZzsYKyCW95zOK59HrZNFMK26iOJngipUGYuTVqxea+2i4P
WfQJE0v7StprYF0coG4qn3dTJ0hVOYl3HEVGdlMzne2E/ScRnBKMiu4O9PomJMWz
sJQZ1s7ghIkeFbVrKurho4lGj+VklK9uOAyUrKOfGwKBgGvVoDQTA3M5q4DEWu1G
j7IXVxk+R3w+cu1ykSSl00Z/aE/sR0qqzhhfBy2PYOLkG1T4QCa+gKvpRDQaHcAZ
uSKQm1MClLbejRu5JnJPM1Aev2TK3TCQ6NXK+AFMbwWLVx8eQl4jpjc3mrzFjvYK
P8z7Sd/FK78rKTF/CG0o7nFF
-----END PRIVATE KEY-----",
];

/// The DER of a PEM block's content.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .unwrap_or_default()
}

/// The RSAPublicKey DER of a PKCS#8 private key from the pool.
pub(super) fn public_key_der(pem: &str) -> Vec<u8> {
    RsaKeyPair::from_pkcs8(&pem_der(pem))
        .map(|k| k.public_key().as_ref().to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_keys_parse_and_differ() {
        let a = public_key_der(KEY_POOL[0]);
        let b = public_key_der(KEY_POOL[1]);
        assert!(!a.is_empty() && !b.is_empty());
        assert_ne!(a, b);
    }
}
