#![doc = include_str!("../README.md")]

mod limits;
mod read;
mod toml_depth;
mod value;

use std::fmt;

pub use limits::{Limit, Limits};
pub use read::{describe_file_type, read_file};

use serde::de::DeserializeSeed;
use serde_json::Value;

/// The text formats users give stepstack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// YAML 1.2 (booleans are only `true`/`false`, as in the JSON schema of YAML 1.2).
    Yaml,
    /// TOML 1.0.
    Toml,
    /// JSON.
    Json,
}

impl Format {
    /// The format a file name's extension stands for (`.yaml`, `.yml`, `.toml`, `.json`).
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Some(Format::Yaml),
            Some("toml") => Some(Format::Toml),
            Some("json") => Some(Format::Json),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Toml => "TOML",
            Format::Json => "JSON",
        })
    }
}

/// A position in the input, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The line.
    pub line: usize,
    /// The column (in characters).
    pub column: usize,
}

impl Location {
    /// The position of byte `offset` in `text`.
    pub fn of_offset(text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why user input was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The input breaks one of the [`Limits`].
    #[error("{}the input {limit}", at(.location))]
    Limit {
        /// Which limit.
        limit: Limit,
        /// Where it was hit, when known.
        location: Option<Location>,
    },
    /// The text is not valid in its format (syntax error, duplicate key, non-finite
    /// number, …).
    #[error("{}{message}", at(.location))]
    Syntax {
        /// The format.
        format: Format,
        /// What is wrong.
        message: String,
        /// Where, when known.
        location: Option<Location>,
    },
    /// The text holds a NUL character, which none of the formats allows (and which some
    /// parsers treat as the end of the input, silently dropping the rest).
    #[error(
        "{location}: the input contains a NUL character (U+0000), which YAML, TOML and JSON do not allow"
    )]
    Nul {
        /// Where the first one is.
        location: Location,
    },
    /// The file's bytes are not UTF-8.
    #[error("{location}: the file is not UTF-8 text")]
    NotUtf8 {
        /// Where the first bad byte is.
        location: Location,
    },
    /// The path names something other than a regular file.
    #[error("it is {kind}, not a regular file")]
    NotAFile {
        /// What it is ("a directory", "a FIFO (named pipe)", …).
        kind: &'static str,
    },
    /// The file could not be opened or read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl InputError {
    /// The limit this error reports, if it reports one.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            InputError::Limit { limit, .. } => Some(*limit),
            _ => None,
        }
    }
}

fn at(location: &Option<Location>) -> String {
    location.map(|l| format!("{l}: ")).unwrap_or_default()
}

/// Parses `text` as `format` into a JSON value within `limits`.
///
/// Besides the size, depth, value-count and alias-expansion limits, every format is
/// held to the same rules: duplicate map keys are refused (JSON included), numbers must
/// be finite (TOML's `nan` and `inf` are refused rather than dropped), and a NUL
/// character is refused rather than ending the input early.
pub fn parse(text: &str, format: Format, limits: &Limits) -> Result<Value, InputError> {
    if text.len() > limits.max_bytes {
        return Err(InputError::Limit {
            limit: Limit::Size {
                max: limits.max_bytes,
            },
            location: None,
        });
    }
    if let Some(offset) = text.find('\0') {
        return Err(InputError::Nul {
            location: Location::of_offset(text, offset),
        });
    }
    let state = value::State::new(limits);
    let result = match format {
        Format::Json => parse_json(text, &state),
        Format::Toml => parse_toml(text, limits, &state),
        Format::Yaml => parse_yaml(text, limits, &state),
    };
    result.map_err(|(message, location)| match state.breach() {
        Some(limit) => InputError::Limit { limit, location },
        None => InputError::Syntax {
            format,
            message,
            location,
        },
    })
}

type Failure = (String, Option<Location>);

fn parse_json(text: &str, state: &value::State<'_>) -> Result<Value, Failure> {
    let failure = |e: serde_json::Error| {
        let location = (e.line() > 0).then(|| Location {
            line: e.line(),
            column: e.column(),
        });
        // serde_json appends " at line L column C"; the location is shown separately.
        let message = e.to_string();
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        (message, location)
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let value = state.seed().deserialize(&mut de).map_err(failure)?;
    de.end().map_err(failure)?;
    Ok(value)
}

fn parse_toml(text: &str, limits: &Limits, state: &value::State<'_>) -> Result<Value, Failure> {
    if let Some(offset) = toml_depth::too_deep(text, limits.max_depth) {
        state.set_breach(Limit::Depth {
            max: limits.max_depth,
        });
        return Err((String::new(), Some(Location::of_offset(text, offset))));
    }
    let failure = |e: toml::de::Error| {
        let location = e.span().map(|s| Location::of_offset(text, s.start));
        (e.message().to_string(), location)
    };
    let de = toml::de::Deserializer::parse(text).map_err(failure)?;
    state.seed().deserialize(de).map_err(failure)
}

fn parse_yaml(text: &str, limits: &Limits, state: &value::State<'_>) -> Result<Value, Failure> {
    let options = yaml_options(limits);
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        state.seed().deserialize(de)
    })
    .map_err(|e| {
        let location = e.location().map(|l| Location {
            line: usize::try_from(l.line()).unwrap_or(usize::MAX),
            column: usize::try_from(l.column()).unwrap_or(usize::MAX),
        });
        if let Some(limit) = yaml_limit(&e, limits) {
            state.set_breach(limit);
        }
        (yaml_message(&e), location.filter(|l| l.line > 0))
    })
}

/// serde-saphyr's options for `limits`: its budget enforces depth, value count, events,
/// scalar bytes and alias replay while parsing, so an alias bomb never expands.
fn yaml_options(limits: &Limits) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = limits.max_depth;
    budget.flow_nesting_limit = limits.max_depth;
    budget.max_nodes = limits.max_values;
    budget.max_events = limits.max_values.saturating_mul(4);
    budget.max_aliases = limits.max_values;
    budget.max_anchors = limits.max_values;
    budget.max_total_scalar_bytes = limits.max_bytes;
    budget.max_recorded_anchor_events = limits.max_values;
    budget.max_recorded_anchor_bytes = limits.max_bytes;
    budget.max_documents = 1;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = limits.max_values;
    options.alias_limits.max_replay_stack_depth = limits.max_depth;
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::Error;
    // YAML 1.2 core schema: `yes`, `on`, `no` stay strings (as they were with yaml-rust2).
    options.strict_booleans = true;
    // `0755` stays the text it is (as with serde_yaml) instead of becoming 755.0.
    options.leading_zero_numbers_as_strings = true;
    options.with_snippet = false;
    options
}

/// Which of our limits a serde-saphyr error reports, if any.
fn yaml_limit(e: &serde_saphyr::Error, limits: &Limits) -> Option<Limit> {
    use serde_saphyr::budget::BudgetBreach as B;
    let e = yaml_original(e);
    let aliases = Limit::AliasExpansion {
        max: limits.max_values,
    };
    match e {
        serde_saphyr::Error::Budget { breach, .. } => Some(match breach {
            B::Depth { .. } => Limit::Depth {
                max: limits.max_depth,
            },
            B::Nodes { .. } | B::Events { .. } => Limit::Values {
                max: limits.max_values,
            },
            B::ScalarBytes { .. } | B::InputBytes { .. } | B::RecordedAnchorBytes { .. } => {
                Limit::Size {
                    max: limits.max_bytes,
                }
            }
            _ => aliases,
        }),
        serde_saphyr::Error::AliasReplayLimitExceeded { .. }
        | serde_saphyr::Error::AliasExpansionLimitExceeded { .. }
        | serde_saphyr::Error::AliasReplayStackDepthExceeded { .. }
        | serde_saphyr::Error::AliasReplayCounterOverflow { .. } => Some(aliases),
        _ => {
            // The parser's and deserializer's own nesting guards report in words.
            let text = e.to_string();
            let deep = text.contains("recursion limit")
                || (text.contains("nesting") && text.contains("limit"));
            deep.then_some(Limit::Depth {
                max: limits.max_depth,
            })
        }
    }
}

/// The error inside serde-saphyr's alias and snippet wrappers.
fn yaml_original(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = e
    {
        e = error;
    }
    e
}

/// The message of a serde-saphyr error without its location (shown separately).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let e = yaml_original(e);
    if let serde_saphyr::Error::Message { msg, .. } = e {
        return msg.clone();
    }
    let text = e.to_string();
    let text = text.lines().next().unwrap_or_default().to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Reads `path` within `limits` (see [`read_file`]) and parses it in the format its
/// extension names; `None` when the extension is not `.yaml`, `.yml`, `.toml` or
/// `.json`.
pub fn load_file(path: &std::path::Path, limits: &Limits) -> Result<Option<Value>, InputError> {
    let Some(format) = Format::from_path(path) else {
        return Ok(None);
    };
    let text = read_file(path, limits)?;
    parse(&text, format, limits).map(Some)
}

/// Checks that `value` (built in memory, e.g. from a `--set` path) nests no deeper than
/// `limits.max_depth`; walks without recursion.
pub fn check_depth(value: &Value, limits: &Limits) -> Result<(), InputError> {
    let mut pending = vec![(value, 0usize)];
    while let Some((v, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        let depth = depth + 1;
        if depth > limits.max_depth {
            return Err(InputError::Limit {
                limit: Limit::Depth {
                    max: limits.max_depth,
                },
                location: None,
            });
        }
        pending.extend(children.map(|c| (c, depth)));
    }
    Ok(())
}
