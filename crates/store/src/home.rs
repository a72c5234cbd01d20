//! Where the store lives and how its files are created.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

/// The environment variable that moves the stepstack home.
pub const HOME_ENV: &str = "STEPSTACK_HOME";

/// The database file's name inside the home.
pub const DATABASE_FILE: &str = "stepstack.db";

/// Resolves the stepstack home: `explicit` (the CLI's `--home`) wins, then
/// `STEPSTACK_HOME` read through `env`, then the platform data directory +
/// `stepstack` (e.g. `~/.local/share/stepstack` on Linux).
///
/// Empty values count as unset. Fails only when no data directory is known and neither
/// override is given.
pub fn home_dir(
    explicit: Option<PathBuf>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PathBuf> {
    if let Some(path) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(path);
    }
    if let Some(path) = env(HOME_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    dirs::data_dir().map(|d| d.join("stepstack")).ok_or_else(|| {
        StoreError::invalid(format!(
            "cannot find a data directory for the stepstack home on this system; set {HOME_ENV} or pass --home"
        ))
    })
}

/// Creates the home directory (mode 0700) if it does not exist, and makes an existing
/// one 0700: it holds cluster-admin kubeconfigs, the secrets key and step logs, and its
/// mode is what keeps other users out of whatever an older version (or another tool)
/// left in it with looser modes.
pub(crate) fn ensure_home(home: &Path) -> Result<()> {
    match fs::metadata(home) {
        Ok(meta) if meta.is_dir() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o777;
                if mode != 0o700 {
                    match set_mode(home, 0o700) {
                        Ok(()) => tracing::info!(
                            home = %home.display(),
                            from = format!("{mode:o}"),
                            "made the stepstack home private to its owner (mode 700)"
                        ),
                        // Not ours to change (another owner): say so, and go on.
                        Err(e) => tracing::warn!(
                            home = %home.display(),
                            mode = format!("{mode:o}"),
                            error = %e,
                            "the stepstack home is not private (mode 700) and could not be made so"
                        ),
                    }
                }
            }
            Ok(())
        }
        Ok(_) => Err(StoreError::invalid(format!(
            "the stepstack home {} is not a directory; point --home or {HOME_ENV} at a directory",
            home.display()
        ))),
        Err(_) => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder
                .create(home)
                .map_err(|e| StoreError::io("could not create the stepstack home", home, e))?;
            // The mode passed to mkdir is filtered by the umask; make sure it is 0700.
            set_mode(home, 0o700)?;
            tracing::debug!(home = %home.display(), "created the stepstack home");
            Ok(())
        }
    }
}

/// Sets the permission bits of `path` (no-op off Unix).
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let current = fs::metadata(path)
            .map_err(|e| StoreError::io("could not read the permissions of", path, e))?
            .permissions()
            .mode()
            & 0o777;
        if current != mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| StoreError::io("could not restrict the permissions of", path, e))?;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
    }
    Ok(())
}

/// Creates `path` with mode 0600 if it does not exist yet (never truncates), and makes
/// sure an existing file is 0600.
pub(crate) fn ensure_private_file(path: &Path) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|e| StoreError::io("could not create", path, e))?;
    set_mode(path, 0o600)
}

/// Writes `contents` to a new file at `path` with mode 0600, atomically: the file
/// appears complete or not at all. Returns `Ok(false)` when `path` already exists (then
/// nothing is written).
pub(crate) fn create_private_file_atomically(path: &Path, contents: &[u8]) -> Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        uuid::Uuid::new_v4().simple()
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options
            .open(&tmp)
            .map_err(|e| StoreError::io("could not create", &tmp, e))?;
        set_mode(&tmp, 0o600)?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|e| StoreError::io("could not write", &tmp, e))?;
        // A hard link fails if `path` exists, so exactly one process wins the race.
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(StoreError::io("could not create", path, e)),
        }
    })();
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_home_wins_over_env_and_default() {
        let env = |k: &str| (k == HOME_ENV).then(|| "/from/env".to_owned());
        assert_eq!(
            home_dir(Some(PathBuf::from("/explicit")), env).unwrap(),
            PathBuf::from("/explicit")
        );
        assert_eq!(home_dir(None, env).unwrap(), PathBuf::from("/from/env"));
        let empty = |_: &str| Some(String::new());
        let default = home_dir(None, empty);
        if let Some(data) = dirs::data_dir() {
            assert_eq!(default.unwrap(), data.join("stepstack"));
        } else {
            assert!(matches!(default, Err(StoreError::Invalid { .. })));
        }
    }

    #[test]
    fn atomic_create_has_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(create_private_file_atomically(&path, b"one").unwrap());
        assert!(!create_private_file_atomically(&path, b"two").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"one");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
