//! Private files and directories: what stepstack writes under its home (kubeconfigs
//! with cluster-admin keys, step logs, outcomes) is readable by its owner only.
//!
//! Files are created `0600` and directories `0700` whatever the process's umask: the
//! mode is passed to `open`/`mkdir` (so there is no moment when the file is readable by
//! others) and then set explicitly (a umask can only take bits away, and an existing
//! file keeps the mode it had). Off Unix these are the plain `std::fs` calls.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// The mode of private files.
pub const FILE_MODE: u32 = 0o600;
/// The mode of private directories.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and any missing parents, each created one `0700`. Existing
/// directories are left as they are.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    // Create from the outermost missing ancestor inwards, so every new directory gets
    // the mode (DirBuilder::recursive would leave the umask's mark on them).
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .collect();
    for path in missing.into_iter().rev() {
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(DIR_MODE);
        }
        match builder.create(path) {
            Ok(()) => set_mode(path, DIR_MODE)?,
            // Another process made it in between: fine, it is theirs to have set.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `contents` to `path` (created or truncated) and makes it `0600`.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let mut file = open(
        path,
        OpenOptions::new().write(true).create(true).truncate(true),
    )?;
    file.write_all(contents.as_ref())
}

/// Creates (or truncates) `path` for writing, `0600`.
pub fn create(path: &Path) -> io::Result<File> {
    open(
        path,
        OpenOptions::new().write(true).create(true).truncate(true),
    )
}

/// Opens `path` for appending, creating it `0600` if needed (and making an existing one
/// `0600`).
pub fn append(path: &Path) -> io::Result<File> {
    open(path, OpenOptions::new().create(true).append(true))
}

fn open(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // On the open file: the path cannot be swapped in between.
        if file.metadata()?.permissions().mode() & 0o777 != FILE_MODE {
            file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
        }
    }
    Ok(file)
}

/// Sets the permission bits of `path` to `mode` if they differ (a no-op off Unix).
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if fs::metadata(path)?.permissions().mode() & 0o777 != mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_files_are_private_and_existing_files_are_tightened() {
        let base = tempfile::tempdir().unwrap();
        fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let dir = base.path().join("a").join("b").join("c");
        create_dir_all(&dir).unwrap();
        for d in [base.path().join("a"), base.path().join("a/b"), dir.clone()] {
            assert_eq!(mode(&d), DIR_MODE, "{}", d.display());
        }
        // An existing directory is not this function's to change.
        assert_eq!(mode(base.path()), 0o755);
        create_dir_all(&dir).unwrap();

        let file = dir.join("f");
        write(&file, "one").unwrap();
        assert_eq!(mode(&file), FILE_MODE);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        append(&file).unwrap().write_all(b" two").unwrap();
        assert_eq!(mode(&file), FILE_MODE);
        assert_eq!(fs::read_to_string(&file).unwrap(), "one two");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
        create(&file).unwrap();
        assert_eq!(mode(&file), FILE_MODE);
        assert_eq!(fs::read_to_string(&file).unwrap(), "");
    }
}
