//! Reading a user's file: only regular files (a FIFO would block, a directory has no
//! text), never more than the size limit, UTF-8 only.

use std::io::Read;
use std::path::Path;

use crate::{InputError, Limit, Limits, Location};

/// What a file type is, in words ("a directory", "a FIFO (named pipe)", …); `None` for a
/// regular file.
pub fn describe_file_type(file_type: std::fs::FileType) -> Option<&'static str> {
    if file_type.is_file() {
        return None;
    }
    if file_type.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if file_type.is_socket() {
            return Some("a socket");
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return Some("a device");
        }
    }
    Some("not a regular file")
}

/// Reads the text of the regular file at `path`, at most `limits.max_bytes`.
///
/// The file type is checked before the file is opened, so a FIFO is refused instead of
/// blocking the read until some writer appears.
pub fn read_file(path: &Path, limits: &Limits) -> Result<String, InputError> {
    let metadata = std::fs::metadata(path)?;
    if let Some(kind) = describe_file_type(metadata.file_type()) {
        return Err(InputError::NotAFile { kind });
    }
    let too_large = || InputError::Limit {
        limit: Limit::Size {
            max: limits.max_bytes,
        },
        location: None,
    };
    if metadata.len() > limits.max_bytes as u64 {
        return Err(too_large());
    }
    let file = std::fs::File::open(path)?;
    // The path may have been replaced between the check and the open.
    if let Some(kind) = describe_file_type(file.metadata()?.file_type()) {
        return Err(InputError::NotAFile { kind });
    }
    let mut bytes = Vec::new();
    file.take(limits.max_bytes as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > limits.max_bytes {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let text = String::from_utf8_lossy(&bytes[..valid]);
        InputError::NotUtf8 {
            location: Location::of_offset(&text, valid),
        }
    })
}
