//! ZenML-style free-form configuration arguments: `--key=value` pairs that are not flags
//! of the command, with `@path` reading the value from a file (`@@` escapes a leading `@`).
//!
//! `stepstack service-connector register aws-eu --type aws --region=eu-west-1
//! --aws_secret_access_key=@key.txt` passes `region` and `aws_secret_access_key` to the
//! connector type, which validates them against its schema.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;

use crate::exit::{CliError, CliResult};

/// Commands that accept free-form `--key=value` configuration.
const FREE_FORM_COMMANDS: &[&[&str]] = &[
    &["service-connector", "register"],
    &["service-connector", "update"],
    &["step-operator", "register"],
    &["step-operator", "update"],
];

/// The largest file `@path` may read.
const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Free-form values, in key order.
pub(crate) type FreeForm = BTreeMap<String, String>;

/// Splits the free-form `--key=value` arguments off `args` (program name first) for the
/// commands that accept them; every other argument is left for clap.
pub(crate) fn split(
    command: &clap::Command,
    args: Vec<OsString>,
) -> CliResult<(Vec<OsString>, FreeForm)> {
    let Some((leaf, known)) = leaf_command(command, &args) else {
        return Ok((args, FreeForm::new()));
    };
    if !FREE_FORM_COMMANDS
        .iter()
        .any(|path| *path == leaf.as_slice())
    {
        return Ok((args, FreeForm::new()));
    }
    let mut kept = Vec::with_capacity(args.len());
    let mut free = FreeForm::new();
    let mut after_separator = false;
    for arg in args {
        let text = arg.to_string_lossy();
        if after_separator || text == "--" {
            after_separator = true;
            kept.push(arg);
            continue;
        }
        let Some((key, value)) = text
            .strip_prefix("--")
            .and_then(|rest| rest.split_once('='))
        else {
            kept.push(arg);
            continue;
        };
        if known.contains(key) {
            kept.push(arg);
            continue;
        }
        if !is_identifier(key) {
            return Err(CliError::usage(format!(
                "`--{key}=…` is not a configuration attribute: attribute names are letters, digits and underscores"
            )));
        }
        if free
            .insert(key.to_owned(), read_value(key, value)?)
            .is_some()
        {
            return Err(CliError::usage(format!(
                "`--{key}` is given twice; give it once"
            )));
        }
    }
    Ok((kept, free))
}

/// The subcommand path in `args` and the long flags its leaf command knows (its own and
/// its parents').
fn leaf_command(
    root: &clap::Command,
    args: &[OsString],
) -> Option<(Vec<String>, BTreeSet<String>)> {
    let mut command = root;
    let mut path = Vec::new();
    let mut known = long_flags(root);
    for arg in args.iter().skip(1) {
        let text = arg.to_str()?;
        if text.starts_with('-') {
            continue;
        }
        match command.find_subcommand(text) {
            Some(sub) => {
                path.push(sub.get_name().to_owned());
                known.extend(long_flags(sub));
                command = sub;
            }
            None => break,
        }
    }
    Some((path, known))
}

fn long_flags(command: &clap::Command) -> BTreeSet<String> {
    command
        .get_arguments()
        .flat_map(|a| a.get_long_and_visible_aliases().unwrap_or_default())
        .map(str::to_owned)
        .chain(["help".to_owned()])
        .collect()
}

fn read_value(key: &str, value: &str) -> CliResult<String> {
    if let Some(escaped) = value.strip_prefix("@@") {
        return Ok(format!("@{escaped}"));
    }
    let Some(path) = value.strip_prefix('@') else {
        return Ok(value.to_owned());
    };
    // A regular file within the input limits: a FIFO is refused rather than read forever.
    let limits = stepstack_input::Limits::DEFAULT.with_max_bytes(MAX_FILE_BYTES);
    let text = stepstack_input::read_file(std::path::Path::new(path), &limits)
        .map_err(|e| CliError::usage(format!("could not read `{path}` given for --{key}: {e}")))?;
    if let Some(offset) = text.find('\0') {
        let at = stepstack_input::Location::of_offset(&text, offset);
        return Err(CliError::usage(format!(
            "`{path}` given for --{key} contains a NUL character at {at}"
        )));
    }
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Turns free-form strings into JSON values as the schema types them: strings stay
/// strings; booleans, numbers, objects and lists are parsed as YAML (so JSON works too).
pub(crate) fn typed_values(
    free: &FreeForm,
    schema: &serde_json::Value,
) -> CliResult<serde_json::Map<String, serde_json::Value>> {
    let properties = schema.get("properties").and_then(|p| p.as_object());
    let mut values = serde_json::Map::new();
    for (key, raw) in free {
        let declared = properties
            .and_then(|p| p.get(key))
            .map(declared_types)
            .unwrap_or_default();
        let value = if declared.iter().all(|t| t == "string") && !declared.is_empty() {
            serde_json::Value::String(raw.clone())
        } else {
            let parsed = stepstack_input::parse(
                raw,
                stepstack_input::Format::Yaml,
                &stepstack_input::Limits::DEFAULT,
            );
            match parsed {
                Ok(serde_json::Value::Null) if !raw.trim().is_empty() && raw.trim() != "null" => {
                    serde_json::Value::String(raw.clone())
                }
                Ok(value) => value,
                Err(e) if e.limit().is_some() => {
                    return Err(CliError::usage(format!("--{key}: the value {e}")));
                }
                Err(e) => {
                    return Err(CliError::usage(format!(
                        "--{key}: the value is not valid YAML or JSON: {e}"
                    )));
                }
            }
        };
        values.insert(key.clone(), value);
    }
    Ok(values)
}

/// The JSON types a schema property allows (empty when it does not say).
fn declared_types(property: &serde_json::Value) -> Vec<String> {
    match property.get("type") {
        Some(serde_json::Value::String(t)) => vec![t.clone()],
        Some(serde_json::Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str())
            .filter(|t| *t != "null")
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn cli() -> Command {
        Command::new("stepstack")
            .arg(Arg::new("home").long("home").global(true))
            .subcommand(
                Command::new("service-connector").subcommand(
                    Command::new("register")
                        .arg(Arg::new("type").long("type"))
                        .arg(Arg::new("name")),
                ),
            )
            .subcommand(Command::new("stack").subcommand(Command::new("list")))
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn splits_unknown_key_value_flags_of_free_form_commands() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key.txt");
        std::fs::write(&key_file, "s3cr3t\n").unwrap();
        let at_key = format!("--aws_secret_access_key=@{}", key_file.display());
        let (kept, free) = split(
            &cli(),
            args(&[
                "stepstack",
                "service-connector",
                "register",
                "aws-eu",
                "--type=aws",
                "--region=eu-west-1",
                &at_key,
                "--note=@@literal",
                "--home=/tmp/h",
            ]),
        )
        .unwrap();
        assert_eq!(
            kept,
            args(&[
                "stepstack",
                "service-connector",
                "register",
                "aws-eu",
                "--type=aws",
                "--home=/tmp/h"
            ])
        );
        assert_eq!(free["region"], "eu-west-1");
        assert_eq!(free["aws_secret_access_key"], "s3cr3t");
        assert_eq!(free["note"], "@literal");
    }

    #[test]
    fn other_commands_keep_their_arguments() {
        let input = args(&["stepstack", "stack", "list", "--region=x"]);
        let (kept, free) = split(&cli(), input.clone()).unwrap();
        assert_eq!(kept, input);
        assert!(free.is_empty());
    }

    #[test]
    fn bad_keys_files_and_repeats_are_usage_errors() {
        let err = split(
            &cli(),
            args(&["stepstack", "service-connector", "register", "--bad-key=1"]),
        )
        .unwrap_err();
        assert!(
            err.error
                .to_string()
                .contains("not a configuration attribute"),
            "{}",
            err.error
        );
        let err = split(
            &cli(),
            args(&[
                "stepstack",
                "service-connector",
                "register",
                "--k=@/nonexistent/x",
            ]),
        )
        .unwrap_err();
        assert!(
            err.error
                .to_string()
                .contains("could not read `/nonexistent/x` given for --k"),
            "{}",
            err.error
        );
        let err = split(
            &cli(),
            args(&[
                "stepstack",
                "service-connector",
                "register",
                "--k=1",
                "--k=2",
            ]),
        )
        .unwrap_err();
        assert!(
            err.error.to_string().contains("given twice"),
            "{}",
            err.error
        );
    }

    #[test]
    fn values_are_typed_by_the_schema() {
        let schema = serde_json::json!({"properties": {
            "token": {"type": "string"},
            "insecure": {"type": "boolean"},
            "pod_settings": {"type": ["object", "null"]},
        }});
        let free: FreeForm = [
            ("token".to_owned(), "12345".to_owned()),
            ("insecure".to_owned(), "true".to_owned()),
            (
                "pod_settings".to_owned(),
                r#"{"node_selectors": {"pool": "gpu"}}"#.to_owned(),
            ),
            ("undeclared".to_owned(), "3".to_owned()),
        ]
        .into();
        let typed = typed_values(&free, &schema).unwrap();
        assert_eq!(typed["token"], "12345");
        assert_eq!(typed["insecure"], true);
        assert_eq!(typed["pod_settings"]["node_selectors"]["pool"], "gpu");
        assert_eq!(typed["undeclared"], 3);
    }
}
