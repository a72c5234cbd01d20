//! `cargo xtask demo`: the seed workflow of DESIGN.md §1 on the embedded emulated
//! cluster, through the real `stepstack` binary, with a throw-away home directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

pub(crate) fn run(sh: &Shell) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    cmd!(sh, "{cargo} build -p stepstack-cli --bins --quiet").run()?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| sh.current_dir().join("target"));
    let binary = target.join("debug").join("stepstack");
    let home = std::env::temp_dir().join(format!("stepstack-demo-{}", std::process::id()));
    let demo = Demo {
        sh,
        binary: &binary,
        home: &home,
    };
    let result = demo.seed_workflow();
    // Stop the cluster whatever happened, then clean up.
    let _ = demo.stepstack(&["local-cluster", "stop"]);
    let _ = std::fs::remove_dir_all(&home);
    result
}

struct Demo<'a> {
    sh: &'a Shell,
    binary: &'a Path,
    home: &'a Path,
}

impl Demo<'_> {
    fn seed_workflow(&self) -> anyhow::Result<()> {
        self.stepstack(&["local-cluster", "start", "--namespace", "ml"])?;
        self.stepstack(&[
            "service-connector",
            "list-resources",
            "--resource-type",
            "kubernetes-cluster",
            "-e",
        ])?;
        self.stepstack(&[
            "step-operator",
            "register",
            "k8s",
            "--flavor",
            "kubernetes",
            "--kubernetes_namespace=ml",
        ])?;
        self.stepstack(&[
            "step-operator",
            "connect",
            "k8s",
            "--connector",
            "local-cluster",
        ])?;
        self.stepstack(&["stack", "update", "-s", "k8s"])?;
        self.stepstack(&["settings", "validate", "examples/seed/settings.yaml"])?;
        self.stepstack(&[
            "step",
            "run",
            "trainer",
            "--settings",
            "examples/seed/settings.yaml",
            "--pipeline",
            "my_pipeline",
            "--",
            "sh",
            "-c",
            "echo \"training in pod $HOSTNAME\"; for epoch in 1 2 3; do echo \"epoch $epoch: loss=0.$((4 - epoch))\"; done",
        ])?;
        self.stepstack(&["step", "list"])?;
        let kubeconfig = self.home.join("local-cluster").join("kubeconfig");
        if cmd!(self.sh, "kubectl version --client")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
        {
            announce("kubectl get pods -n ml -l pipeline=my_pipeline --show-labels");
            let _env = self.sh.push_env("KUBECONFIG", &kubeconfig);
            cmd!(
                self.sh,
                "kubectl get pods -n ml -l pipeline=my_pipeline --show-labels"
            )
            .quiet()
            .run()?;
        } else {
            announce(
                "(kubectl is not installed; skipping `kubectl get pods -l pipeline=my_pipeline`)",
            );
        }
        Ok(())
    }

    fn stepstack(&self, args: &[&str]) -> anyhow::Result<()> {
        announce(&format!("stepstack {}", shell_words(args)));
        let status = std::process::Command::new(self.binary)
            .args(args)
            .env("STEPSTACK_HOME", self.home)
            .current_dir(self.sh.current_dir())
            .status()
            .with_context(|| format!("running {}", self.binary.display()))?;
        if !status.success() {
            bail!("`stepstack {}` failed ({status})", shell_words(args));
        }
        Ok(())
    }
}

fn announce(line: &str) {
    #[allow(clippy::print_stdout)]
    {
        println!("\n$ {line}");
    }
}

fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=./:".contains(c))
            {
                (*a).to_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
