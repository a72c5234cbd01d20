#![doc = include_str!("../README.md")]

pub mod run;
pub mod spec;

pub use run::{Reason, RunResult, exit_code};
pub use spec::{AgentSpec, InputSpec, OutputSpec, SpecError, StoreSpec};

use stepstack_core::Registry;

/// The artifact-store flavors the agent knows: every flavor of `stepstack-artifact-store`.
pub fn registry() -> Result<Registry, stepstack_core::Error> {
    let mut registry = Registry::new();
    stepstack_artifact_store::register(&mut registry)?;
    Ok(registry)
}

/// Copies the running executable to `dir/stepstack-agent` (mode 0755), for an init
/// container whose image has nothing but the agent (no `cp`).
pub fn install(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    // Without /proc (a bare chroot) the path we were started by is the next best thing.
    let source = std::env::current_exe().or_else(|err| {
        std::env::args_os()
            .next()
            .map(std::path::PathBuf::from)
            .filter(|p| p.is_absolute())
            .ok_or(err)
    })?;
    std::fs::create_dir_all(dir)?;
    let target = dir.join("stepstack-agent");
    // Copy to a temporary name first so a half-copied binary is never executed.
    let partial = dir.join(".stepstack-agent.partial");
    std::fs::copy(&source, &partial)?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&partial, &target)?;
    Ok(target)
}
