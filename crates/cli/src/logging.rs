//! The CLI's log output on stderr: what each `-v` shows, and the one filter every line
//! goes through.
//!
//! - Without `-v` only warnings and errors, minus kube's per-request `ERROR failed
//!   with error …` lines: the command's own error says once which connector could not
//!   reach what.
//! - `-v`: info, and debug for stepstack; `-vv`: debug for everything, the AWS SDK
//!   included. `STEPSTACK_LOG` (an `EnvFilter`) replaces these defaults.
//! - Every line is written with AWS access key ids masked (stepstack treats them as
//!   secret; the SDK's debug events and the requests it describes carry them), whatever
//!   the level or filter.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// What replaces an access key id in the log.
const MASK: &str = "[HIDDEN]";

/// Installs the subscriber for `verbose` (the number of `-v`).
pub(crate) fn init(verbose: u8) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEPSTACK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter(verbose)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(MaskedStderr)
        .with_target(false)
        .try_init();
}

/// The filter for `verbose` when `STEPSTACK_LOG` is not set.
fn default_filter(verbose: u8) -> &'static str {
    match verbose {
        // kube's client logs each failed request at ERROR from its trace layer.
        0 => "warn,kube_client::client::builder=off",
        1 => "info,stepstack=debug",
        _ => "debug",
    }
}

/// `text` with AWS access key ids replaced by `[HIDDEN]`: the value of every
/// `access_key_id: "…"` (how the SDK's `Credentials` print themselves, in its
/// endpoint-resolution debug event, whatever the key looks like: other S3-compatible
/// services use other shapes), then every word that looks like an AWS key id (`AKIA`,
/// `ASIA`, `ABIA` or `ACCA` and 16 upper-case letters or digits), wherever else it
/// stands (signed URLs, canonical requests at trace level).
pub(crate) fn mask_access_key_ids(text: &str) -> Cow<'_, str> {
    match mask_debug_fields(text) {
        Cow::Borrowed(text) => mask_key_shapes(text),
        Cow::Owned(text) => Cow::Owned(mask_key_shapes(&text).into_owned()),
    }
}

/// Masks the quoted value after each `access_key_id: "`.
fn mask_debug_fields(text: &str) -> Cow<'_, str> {
    const FIELD: &str = "access_key_id: \"";
    if !text.contains(FIELD) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(FIELD) {
        let value_start = at + FIELD.len();
        out.push_str(&rest[..value_start]);
        let value = &rest[value_start..];
        // The value ends at the next unescaped quote (or the end of the line).
        let mut end = value.len();
        let mut escaped = false;
        for (i, c) in value.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' | '\n' if !escaped => {
                    end = i;
                    break;
                }
                _ => escaped = false,
            }
        }
        out.push_str(MASK);
        rest = &value[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Masks every word shaped like an AWS access key id.
fn mask_key_shapes(text: &str) -> Cow<'_, str> {
    const PREFIXES: [&[u8]; 4] = [b"AKIA", b"ASIA", b"ABIA", b"ACCA"];
    const LEN: usize = 20;
    let bytes = text.as_bytes();
    let is_key_char = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i + LEN <= bytes.len() {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let ends_word = bytes
            .get(i + LEN)
            .is_none_or(|b| !b.is_ascii_alphanumeric());
        if starts_word
            && ends_word
            && PREFIXES.iter().any(|p| bytes[i..].starts_with(p))
            && bytes[i + 4..i + LEN].iter().all(|&b| is_key_char(b))
        {
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            // `i` and `i + LEN` are ASCII positions, so char boundaries.
            out.push_str(&text[copied..i]);
            out.push_str(MASK);
            copied = i + LEN;
            i += LEN;
        } else {
            i += 1;
        }
    }
    match out {
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(text),
    }
}

/// Stderr, through [`mask_access_key_ids`]. The fmt layer writes each event with one
/// `write_all` of the whole formatted line, so a key id is never split across writes.
struct MaskedStderr;

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = MaskedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedWriter(io::stderr())
    }
}

/// One event's writer (see [`MaskedStderr`]).
struct MaskedWriter(io::Stderr);

impl Write for MaskedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(mask_access_key_ids(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_ids_are_masked_wherever_they_stand() {
        for (text, masked) in [
            ("AKIAFAKEDEPLOYER0001", "[HIDDEN]"),
            (
                "Credential=AKIAIOSFODNN7EXAMPLE/20250101/eu-west-1/sts/aws4_request",
                "Credential=[HIDDEN]/20250101/eu-west-1/sts/aws4_request",
            ),
            (
                "access_key_id: \"ASIAY34FZKBOKMUTVV7A\", x AKIA1234567890ABCDEF.",
                "access_key_id: \"[HIDDEN]\", x [HIDDEN].",
            ),
            ("é AKIAFAKEDEPLOYER0001 é", "é [HIDDEN] é"),
            // The SDK's Debug of credentials, with a key id of any shape.
            (
                "Credentials { provider_name: \"p\", access_key_id: \"minio-admin\", secret_access_key: \"** redacted **\" } and access_key_id: \"a\\\"b\"",
                "Credentials { provider_name: \"p\", access_key_id: \"[HIDDEN]\", secret_access_key: \"** redacted **\" } and access_key_id: \"[HIDDEN]\"",
            ),
            ("access_key_id: \"cut off", "access_key_id: \"[HIDDEN]"),
        ] {
            assert_eq!(mask_access_key_ids(text), masked, "{text}");
        }
        // Not key ids: too short, too long, lower case, inside a word, other prefixes.
        for text in [
            "AKIAFAKE",
            "AKIAFAKEDEPLOYER00011",
            "XAKIAFAKEDEPLOYER0001",
            "akiafakedeployer0001",
            "AKIAfakedeployer0001",
            "AIDAFAKEDEPLOYER0001",
            "arn:aws:iam::123456789012:user/deployer",
            "",
        ] {
            assert_eq!(mask_access_key_ids(text), text, "{text}");
        }
    }

    #[test]
    fn the_quiet_default_leaves_out_kube_request_errors_only() {
        let quiet = default_filter(0);
        assert!(quiet.starts_with("warn,"));
        assert!(quiet.contains("kube_client::client::builder=off"));
        assert!(!default_filter(1).contains("off"));
        assert_eq!(default_filter(2), "debug");
    }
}
