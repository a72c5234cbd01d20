//! `cargo xtask bench [--quick]`: micro-benchmarks (criterion) and the end-to-end
//! harness (`stepstack-bench`) in one go, merged into `target/bench/report.{json,md}`
//! with the machine and commit they came from.
//!
//! Quick mode uses small counts and the dev profile, so CI can check the harness without
//! a release build; its numbers are not representative and the report says so.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};
use xshell::{Shell, cmd};

/// The criterion group of the emulator's benchmarks (`crates/testkit/benches/api.rs`).
const EMULATOR_GROUP: &str = "emulator/";

pub(crate) fn run(sh: &Shell, quick: bool) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| sh.current_dir().join("target"));
    let (profile, profile_dir) = if quick {
        ("dev", "debug")
    } else {
        ("release", "release")
    };
    let out = target.join("bench");
    std::fs::create_dir_all(&out)?;

    // Micro-benchmarks.
    let _ = std::fs::remove_dir_all(target.join("criterion"));
    let criterion_args: &[&str] = if quick {
        &[
            "--warm-up-time",
            "0.2",
            "--measurement-time",
            "0.5",
            "--noplot",
        ]
    } else {
        &["--noplot"]
    };
    cmd!(sh, "{cargo} bench --profile {profile} -p stepstack-settings --bench settings -- {criterion_args...}").run()?;
    cmd!(
        sh,
        "{cargo} bench --profile {profile} -p stepstack-testkit --bench api -- {criterion_args...}"
    )
    .run()?;
    // The emulator's own benchmarks (group `emulator`) get their own section.
    let (emulator, micro): (Vec<Value>, Vec<Value>) = read_criterion(&target.join("criterion"))?
        .into_iter()
        .partition(|b| {
            b["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(EMULATOR_GROUP))
        });

    // End-to-end.
    cmd!(
        sh,
        "{cargo} build --profile {profile} -p stepstack-bench -p stepstack-cli --bins"
    )
    .run()?;
    let bin = target.join(profile_dir);
    let quick_flag: &[&str] = if quick { &["--quick"] } else { &[] };
    let bench = bin.join("stepstack-bench");
    let cli = bin.join("stepstack");
    cmd!(sh, "{bench} run --out {out} --cli {cli} {quick_flag...}").run()?;
    let e2e: Value = serde_json::from_str(&std::fs::read_to_string(out.join("e2e.json"))?)?;

    let report = json!({
        "machine": machine(),
        "commit": commit(sh),
        "mode": if quick { "quick" } else { "full" },
        "profile": profile,
        "micro": micro,
        "emulator": emulator,
        "e2e": e2e,
    });
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(out.join("report.md"), markdown(&report))?;
    #[allow(clippy::print_stderr)]
    {
        eprintln!("wrote {} and report.md", out.join("report.json").display());
    }
    Ok(())
}

/// Each criterion benchmark's median and confidence interval, in nanoseconds.
fn read_criterion(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let mut results = Vec::new();
    // A benchmark's results are in `<dir>/<id>/new`, or `<dir>/<group>/<id>/new` in a group.
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() && !path.join("new").is_dir() {
            for inner in std::fs::read_dir(&path)? {
                paths.push(inner?.path());
            }
        } else {
            paths.push(path);
        }
    }
    for path in paths {
        let (Ok(benchmark), Ok(estimates)) = (
            std::fs::read_to_string(path.join("new/benchmark.json")),
            std::fs::read_to_string(path.join("new/estimates.json")),
        ) else {
            continue;
        };
        let benchmark: Value = serde_json::from_str(&benchmark)?;
        let estimates: Value = serde_json::from_str(&estimates)?;
        let median = &estimates["median"];
        results.push(json!({
            "name": benchmark["full_id"],
            "median_ns": median["point_estimate"],
            "lower_ns": median["confidence_interval"]["lower_bound"],
            "upper_ns": median["confidence_interval"]["upper_bound"],
            // Elements (requests) per iteration, when the benchmark declares them.
            "elements": benchmark["throughput"]["Elements"],
        }));
    }
    results.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(results)
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| (kb / 1_048_576.0 * 10.0).round() / 10.0);
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": memory_gib,
        "os": std::env::consts::OS,
    })
}

fn commit(sh: &Shell) -> Value {
    let head = cmd!(sh, "git rev-parse --short HEAD")
        .quiet()
        .read()
        .unwrap_or_default();
    let dirty = !cmd!(sh, "git status --porcelain")
        .quiet()
        .read()
        .unwrap_or_default()
        .is_empty();
    json!({"head": head, "dirty": dirty})
}

fn markdown(report: &Value) -> String {
    let e2e = &report["e2e"];
    let mut md = String::new();
    let _ = writeln!(md, "# stepstack benchmark report\n");
    let _ = writeln!(
        md,
        "Machine: {} ({} cores, {} GiB). Commit: {}{}. Mode: {}, {} profile.\n",
        report["machine"]["cpu"].as_str().unwrap_or("?"),
        report["machine"]["cores"],
        report["machine"]["memory_gib"],
        report["commit"]["head"].as_str().unwrap_or("?"),
        if report["commit"]["dirty"] == true {
            " (with uncommitted changes)"
        } else {
            ""
        },
        report["mode"].as_str().unwrap_or("?"),
        report["profile"].as_str().unwrap_or("?"),
    );
    if report["mode"] == "quick" {
        let _ = writeln!(
            md,
            "> Quick mode: small counts and a debug build, to check the harness. Not representative.\n"
        );
    }

    let _ = writeln!(
        md,
        "## Micro-benchmarks (criterion)\n\n| benchmark | median | 95% interval |\n|---|---|---|"
    );
    for b in report["micro"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {} | {} | {} – {} |",
            b["name"].as_str().unwrap_or("?"),
            duration(b["median_ns"].as_f64()),
            duration(b["lower_ns"].as_f64()),
            duration(b["upper_ns"].as_f64())
        );
    }

    let _ = writeln!(
        md,
        "\n## Emulator (criterion, `crates/testkit/benches/api.rs`)\n\n| benchmark | median | 95% interval | requests/s |\n|---|---|---|---|"
    );
    for b in report["emulator"].as_array().into_iter().flatten() {
        let per_second = match (b["elements"].as_f64(), b["median_ns"].as_f64()) {
            (Some(n), Some(ns)) if ns > 0.0 => format!("{:.0}", n * 1e9 / ns),
            (None, Some(ns)) if ns > 0.0 => format!("{:.0}", 1e9 / ns),
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} – {} | {per_second} |",
            b["name"]
                .as_str()
                .unwrap_or("?")
                .trim_start_matches(EMULATOR_GROUP),
            duration(b["median_ns"].as_f64()),
            duration(b["lower_ns"].as_f64()),
            duration(b["upper_ns"].as_f64())
        );
    }

    let _ = writeln!(
        md,
        "\n## Launch (trivial steps, one at a time)\n\n| figure | median | p10 | p90 | p99 | n |\n|---|---|---|---|---|---|"
    );
    for (label, key, unit) in [
        (
            "kube-rs baseline: create Job, one watch, delete (ms)",
            "baseline_launch_ms",
            "",
        ),
        ("stepstack: submit → outcome (ms)", "operator_launch_ms", ""),
        (
            "ratio to the baseline, pair by pair",
            "launch_ratio_to_baseline",
            "×",
        ),
        (
            "detection: pod finished → wait returns (ms)",
            "detection_latency_ms",
            "",
        ),
    ] {
        let s = &e2e[key];
        if s.is_null() {
            let _ = writeln!(md, "| {label} | n/a | | | | |");
            continue;
        }
        let _ = writeln!(
            md,
            "| {label} | {}{unit} | {}{unit} | {}{unit} | {}{unit} | {} |",
            num(&s["median"]),
            num(&s["p10"]),
            num(&s["p90"]),
            num(&s["p99"]),
            s["n"]
        );
    }

    let _ = writeln!(
        md,
        "\n## Concurrent steps\n\n| steps | API requests | per step | watches opened | wall (ms) | all succeeded | operator peak memory (MB) |\n|---|---|---|---|---|---|---|"
    );
    for run in e2e["scale"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            run["steps"],
            run["requests"],
            num(&run["requests_per_step"]),
            run["watches_opened"],
            num(&run["wall_ms"]),
            run["all_succeeded"],
            if run["peak_rss_mb"].is_null() {
                "(in-process)".to_owned()
            } else {
                num(&run["peak_rss_mb"])
            }
        );
    }

    let _ = writeln!(
        md,
        "\n## Log throughput (`seq`, ~8 bytes a line)\n\n| read by | lines | MB (text) | s | lines/s | MB/s | every line once, in order |\n|---|---|---|---|---|---|---|"
    );
    for (label, key) in [
        ("the operator (`logs(follow)`, log file kept)", "logs"),
        (
            "a plain kube-rs client (`timestamps=true`, counting only)",
            "logs_raw",
        ),
    ] {
        let logs = &e2e[key];
        if logs.is_null() {
            continue;
        }
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} |",
            logs["lines"],
            num(&json!(logs["bytes"].as_f64().unwrap_or(0.0) / 1_048_576.0)),
            num(&logs["seconds"]),
            num(&logs["lines_per_second"]),
            num(&logs["megabytes_per_second"]),
            logs["all_lines_once_in_order"]
        );
    }

    let _ = writeln!(
        md,
        "\n## CLI start-up (whole process)\n\n| command | median (ms) | p90 (ms) | n | peak memory (MB) |\n|---|---|---|---|---|"
    );
    for c in e2e["cli"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} |",
            c["command"].as_str().unwrap_or("?"),
            num(&c["wall_ms"]["median"]),
            num(&c["wall_ms"]["p90"]),
            c["wall_ms"]["n"],
            num(&c["peak_rss_mb"])
        );
    }

    let _ = writeln!(md, "\n## Targets\n");
    let ratio = e2e["launch_ratio_to_baseline"]["median"].as_f64();
    let detection = e2e["detection_latency_ms"]["p99"].as_f64();
    let per_step: Vec<f64> = e2e["scale"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["requests_per_step"].as_f64())
        .collect();
    let largest = e2e["scale"]
        .as_array()
        .and_then(|runs| runs.last())
        .cloned()
        .unwrap_or(Value::Null);
    let cli_median = e2e["cli"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["wall_ms"]["median"].as_f64())
        .fold(f64::NAN, f64::max);
    // Flat means it does not grow: the largest run may cost at most 20% more per step than
    // the smallest (the shared watch's setup makes small runs dearer, not cheaper).
    let flat = per_step.len() >= 2 && per_step[per_step.len() - 1] <= per_step[0] * 1.2;
    for (target, value, met) in [
        (
            "single launch ≤ 1.2× the baseline (median ratio)",
            ratio.map(|r| format!("{r:.2}×")),
            ratio.map(|r| r <= 1.2),
        ),
        (
            "detection p99 < 50 ms",
            detection.map(|d| format!("{d:.1} ms")),
            detection.map(|d| d < 50.0),
        ),
        (
            "API requests per step do not grow with the number of steps",
            Some(format!("{per_step:.1?}")),
            Some(flat),
        ),
        (
            "largest concurrent run under 100 MB",
            largest["peak_rss_mb"]
                .as_f64()
                .map(|m| format!("{m:.1} MB")),
            largest["peak_rss_mb"].as_f64().map(|m| m < 100.0),
        ),
        (
            "CLI start-up under 20 ms (median)",
            Some(format!("{cli_median:.1} ms")),
            Some(cli_median < 20.0),
        ),
    ] {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "not measured",
        };
        let _ = writeln!(
            md,
            "- {target}: {} — {verdict}",
            value.unwrap_or_else(|| "n/a".to_owned())
        );
    }
    md
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => "n/a".to_owned(),
    }
}

fn duration(ns: Option<f64>) -> String {
    match ns {
        Some(ns) if ns >= 1_000_000.0 => format!("{:.2} ms", ns / 1_000_000.0),
        Some(ns) if ns >= 1_000.0 => format!("{:.2} µs", ns / 1_000.0),
        Some(ns) => format!("{ns:.0} ns"),
        None => "n/a".to_owned(),
    }
}
