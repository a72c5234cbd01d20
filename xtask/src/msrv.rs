//! The declared `rust-version` is checked against what the build really needs.
//!
//! No toolchain other than the installed stable one can be downloaded on the build
//! machines, so the declared minimum cannot be proven by compiling with it. What can be
//! checked offline, and what breaks a user's build in practice, is checked instead:
//! every member inherits the workspace's `rust-version`, that version is a real one no
//! newer than the toolchain in use, and no package in the locked dependency graph
//! declares a newer minimum than ours (if one did, users on our declared minimum could
//! not build us). When a toolchain of exactly the declared version happens to be
//! installed (`rustup toolchain list`), the workspace is also checked with it.

use anyhow::{Context, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

/// A `major.minor[.patch]` Rust version, compared numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RustVersion(u32, u32, u32);

impl RustVersion {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().unwrap_or(Some(0))?;
        Some(Self(major, minor, patch))
    }
}

impl std::fmt::Display for RustVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

pub(crate) fn run(sh: &Shell) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let metadata = cmd!(sh, "{cargo} metadata --format-version 1 --locked")
        .quiet()
        .read()
        .context("cargo metadata")?;
    let metadata: Value = serde_json::from_str(&metadata).context("cargo metadata output")?;
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();

    let mut problems = Vec::new();
    let mut declared = None;
    for package in packages
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(&id)))
    {
        let name = package["name"].as_str().unwrap_or("?");
        match package["rust_version"]
            .as_str()
            .and_then(RustVersion::parse)
        {
            None => problems.push(format!("{name}: declares no rust-version")),
            Some(version) => match declared {
                None => declared = Some(version),
                Some(first) if first != version => problems.push(format!(
                    "{name}: rust-version {version} differs from the workspace's {first}"
                )),
                Some(_) => {}
            },
        }
    }
    let Some(declared) = declared else {
        bail!("no workspace member declares a rust-version");
    };

    // Edition 2024 needs Rust 1.85.
    let edition_minimum = RustVersion(1, 85, 0);
    if declared < edition_minimum {
        problems.push(format!(
            "rust-version {declared} is older than edition 2024 allows ({edition_minimum})"
        ));
    }

    let rustc = cmd!(sh, "rustc --version").quiet().read()?;
    let toolchain = rustc
        .split_whitespace()
        .nth(1)
        .and_then(RustVersion::parse)
        .with_context(|| format!("cannot read the toolchain version from `{rustc}`"))?;
    if declared > toolchain {
        problems.push(format!(
            "rust-version {declared} is newer than the toolchain in use ({toolchain})"
        ));
    }

    for package in packages
        .iter()
        .filter(|p| !p["id"].as_str().is_some_and(|id| members.contains(&id)))
    {
        let Some(needed) = package["rust_version"]
            .as_str()
            .and_then(RustVersion::parse)
        else {
            continue;
        };
        if needed > declared {
            problems.push(format!(
                "dependency {} {} needs Rust {needed}, newer than our rust-version {declared}: raise rust-version or pin an older {0}",
                package["name"].as_str().unwrap_or("?"),
                package["version"].as_str().unwrap_or("?"),
            ));
        }
    }

    if !problems.is_empty() {
        for problem in &problems {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("msrv: {problem}");
            }
        }
        bail!("{} rust-version problem(s)", problems.len());
    }

    let minor = format!("{}.{}", declared.0, declared.1);
    let installed = cmd!(sh, "rustup toolchain list")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with(&minor)) {
        let toolchain = format!("+{minor}");
        cmd!(sh, "{cargo} {toolchain} check --workspace --locked").run()?;
    } else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "msrv: rust-version {declared} is consistent with every locked dependency; \
                 no {minor} toolchain is installed to compile with it"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::RustVersion;

    #[test]
    fn versions_compare_numerically() {
        assert!(RustVersion::parse("1.89").unwrap() > RustVersion::parse("1.9.0").unwrap());
        assert_eq!(
            RustVersion::parse("1.85").unwrap(),
            RustVersion::parse("1.85.0").unwrap()
        );
        assert!(RustVersion::parse("1.x").is_none());
        assert!(RustVersion::parse("1").is_none());
    }
}
