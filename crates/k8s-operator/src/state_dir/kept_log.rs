//! The log file a step keeps under the state directory: JSON lines, each line of the
//! step's log once (whichever stream, in whichever process, saw it), and a closing
//! record when the capture could not read every line.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use parking_lot::Mutex;
use stepstack_core::LogLine;

/// A step's kept log, read from its file without a cluster.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct KeptLog {
    /// Every kept line, once, in the order it was kept.
    pub lines: Vec<LogLine>,
    /// Why lines are missing, when the capture could not read every line.
    pub incomplete: Option<String>,
}

/// Reads the kept log file of a step (`KubernetesHandle::log_file`): each line once
/// (a file two processes wrote without the lock may repeat lines), and whether the
/// capture could not read every line. A missing file is an empty log.
pub fn read_kept_log(path: &Path) -> KeptLog {
    let (lines, incomplete) = read_kept(path);
    KeptLog {
        lines: lines.into_iter().map(|s| s.line).collect(),
        incomplete,
    }
}

/// The record a kept log file ends with when its capture could not read every line.
#[derive(serde::Serialize, serde::Deserialize)]
struct IncompleteRecord {
    incomplete: String,
}

/// Position of a line within its pod's log: its timestamp and its ordinal among the lines
/// with that timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Position {
    /// The line's timestamp.
    pub(crate) ts: Option<Timestamp>,
    /// Its ordinal among the lines with that timestamp (from 1).
    pub(crate) ordinal: u32,
}

impl Position {
    /// Whether a line at `next` comes after `self`.
    pub(crate) fn is_before(&self, next: &Position) -> bool {
        match (self.ts, next.ts) {
            (Some(a), Some(b)) => a < b || (a == b && self.ordinal < next.ordinal),
            _ => true,
        }
    }
}

/// Writes each line of a step run to its file exactly once, whichever stream saw it,
/// in this process or another (`step run` and `step attach` follow the same step).
///
/// A write takes an exclusive lock on the file (`flock`), first reads what other
/// processes appended since this one last looked, and appends only the lines after the
/// last one the file holds for that pod. Replaying the file also skips repeated
/// positions, so a file written before this rule (or by a process without locks)
/// still reads once.
#[derive(Debug, Default)]
pub(crate) struct LogFiles {
    files: Mutex<HashMap<PathBuf, Arc<Mutex<FileState>>>>,
}

#[derive(Debug, Default)]
struct FileState {
    /// Last written position per pod index (`u32::MAX` for single-pod steps).
    last: HashMap<u32, Position>,
    /// How many bytes of the file `last` accounts for (whole lines).
    len: u64,
    broken: bool,
}

impl FileState {
    /// Takes in the lines of the file after `self.len` (up to its last newline); reads
    /// the whole file again if it shrank (replaced). Returns whether the file ends in
    /// a partial line (a writer died mid-line).
    fn catch_up(&mut self, path: &Path, file_len: u64) -> std::io::Result<bool> {
        use std::io::{Read as _, Seek as _};
        if file_len < self.len {
            *self = FileState::default();
        }
        if file_len == self.len {
            return Ok(false);
        }
        let mut file = std::fs::File::open(path)?;
        file.seek(std::io::SeekFrom::Start(self.len))?;
        let mut tail = Vec::new();
        file.take(file_len - self.len).read_to_end(&mut tail)?;
        let whole = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in tail[..whole].split(|b| *b == b'\n') {
            if let Ok(stored) = serde_json::from_slice::<StoredLine>(line) {
                self.last.insert(
                    stored.line.pod_index.unwrap_or(u32::MAX),
                    Position {
                        ts: stored.line.timestamp,
                        ordinal: stored.ordinal,
                    },
                );
            }
        }
        self.len += whole as u64;
        Ok(whole < tail.len())
    }
}

impl LogFiles {
    fn state(&self, path: &Path) -> Arc<Mutex<FileState>> {
        self.files
            .lock()
            .entry(path.to_owned())
            .or_default()
            .clone()
    }

    /// Records in the file that its capture could not read every line (why, for the
    /// readers of the file).
    pub(crate) fn mark_incomplete(&self, path: &Path, why: &str) {
        let state = self.state(path);
        let mut state = state.lock();
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                stepstack_core::private_fs::create_dir_all(dir)?;
            }
            let mut file = stepstack_core::private_fs::append(path)?;
            file.lock()?;
            let file_len = file.metadata()?.len();
            let partial = state.catch_up(path, file_len)?;
            let mut text = if partial { vec![b'\n'] } else { Vec::new() };
            serde_json::to_writer(
                &mut text,
                &IncompleteRecord {
                    incomplete: why.to_owned(),
                },
            )?;
            text.push(b'\n');
            file.write_all(&text)?;
            state.len = file_len + text.len() as u64;
            Ok(())
        })();
        if let Err(err) = result {
            tracing::warn!(file = %path.display(), error = %err, "cannot mark the step's log file incomplete");
        }
    }

    /// Appends the lines of one pod (all with the same pod index) that come after the
    /// last line the file holds for that pod, in one write.
    pub(crate) fn write(&self, path: &Path, lines: &[(LogLine, Position)]) {
        let Some((first, _)) = lines.first() else {
            return;
        };
        let key = first.pod_index.unwrap_or(u32::MAX);
        let state = self.state(path);
        let mut state = state.lock();
        if state.broken {
            return;
        }
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                stepstack_core::private_fs::create_dir_all(dir)?;
            }
            let mut file = stepstack_core::private_fs::append(path)?;
            // One writer at a time across processes; the lock goes with `file`.
            file.lock()?;
            let file_len = file.metadata()?.len();
            let partial = state.catch_up(path, file_len)?;
            let last = state.last.get(&key).copied();
            let mut text = Vec::new();
            if partial {
                // End the dead writer's partial line, so ours start on a line of their own.
                text.push(b'\n');
            }
            let mut written = None;
            // The lines of one write share their timestamp: render it once.
            let mut rendered: Option<(Timestamp, Vec<u8>)> = None;
            for (line, position) in lines {
                if last.is_some_and(|last| !last.is_before(position))
                    || written.is_some_and(|w: Position| !w.is_before(position))
                {
                    continue;
                }
                encode_line(&mut text, line, position.ordinal, &mut rendered)
                    .map_err(std::io::Error::other)?;
                written = Some(*position);
            }
            let Some(written) = written else {
                return Ok(());
            };
            file.write_all(&text)?;
            state.last.insert(key, written);
            state.len = file_len + text.len() as u64;
            Ok(())
        })();
        if let Err(err) = result {
            tracing::warn!(file = %path.display(), error = %err, "cannot write the step's log file; logs are not kept");
            state.broken = true;
        }
    }
}

/// Appends one line of the log file: the [`LogLine`] fields (as `LogLine` serializes
/// them) and the line's ordinal among those with its timestamp, then a newline.
/// `rendered` caches the JSON of the last timestamp.
fn encode_line(
    out: &mut Vec<u8>,
    line: &LogLine,
    ordinal: u32,
    rendered: &mut Option<(Timestamp, Vec<u8>)>,
) -> serde_json::Result<()> {
    out.push(b'{');
    if let Some(ts) = line.timestamp {
        let json = match rendered {
            Some((at, json)) if *at == ts => json,
            _ => &mut rendered.insert((ts, serde_json::to_vec(&ts)?)).1,
        };
        out.extend_from_slice(b"\"timestamp\":");
        out.extend_from_slice(json);
        out.push(b',');
    }
    if let Some(index) = line.pod_index {
        out.extend_from_slice(format!("\"pod_index\":{index},").as_bytes());
    }
    out.extend_from_slice(b"\"text\":");
    serde_json::to_writer(&mut *out, &line.text)?;
    out.extend_from_slice(format!(",\"ordinal\":{ordinal}}}\n").as_bytes());
    Ok(())
}

#[derive(serde::Deserialize)]
pub(crate) struct StoredLine {
    #[serde(flatten)]
    pub(crate) line: LogLine,
    #[serde(default)]
    pub(crate) ordinal: u32,
}

/// The lines of a kept log file, each position once (a file written by two processes
/// without the lock may repeat lines; lines without a timestamp cannot be told apart
/// and are all kept).
#[cfg(test)]
fn read_stored(path: &Path) -> Vec<StoredLine> {
    read_kept(path).0
}

/// The lines of a kept log file (as [`read_stored`]) and, if its capture was cut off,
/// why.
pub(crate) fn read_kept(path: &Path) -> (Vec<StoredLine>, Option<String>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (Vec::new(), None);
    };
    let mut seen = std::collections::HashSet::new();
    let mut incomplete = None;
    let lines = text
        .lines()
        .filter_map(|l| match serde_json::from_str::<StoredLine>(l) {
            Ok(stored) => Some(stored),
            Err(_) => {
                if let Ok(record) = serde_json::from_str::<IncompleteRecord>(l) {
                    incomplete = Some(record.incomplete);
                }
                None
            }
        })
        .filter(|s| {
            s.line.timestamp.is_none()
                || seen.insert((s.line.pod_index, s.line.timestamp, s.ordinal))
        })
        .collect();
    (lines, incomplete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_dir::log_file;

    #[test]
    fn positions_order_by_timestamp_then_ordinal() {
        let t1: Timestamp = "2026-01-01T00:00:01Z".parse().unwrap();
        let t2: Timestamp = "2026-01-01T00:00:02Z".parse().unwrap();
        let a = Position {
            ts: Some(t1),
            ordinal: 1,
        };
        let b = Position {
            ts: Some(t1),
            ordinal: 2,
        };
        let c = Position {
            ts: Some(t2),
            ordinal: 1,
        };
        assert!(a.is_before(&b) && b.is_before(&c) && a.is_before(&c));
        assert!(!b.is_before(&a) && !a.is_before(&a));
    }

    /// Issue 15, item 2: two processes (`step run` and `step attach`) follow the same
    /// step and both write the kept file. Over many generated logs, chunkings and
    /// interleavings, the file holds every line exactly once, in order per pod.
    mod two_writers {
        use super::*;
        use proptest::prelude::*;

        /// One network read of one writer: (writer, lines).
        type Chunk<'a> = (usize, &'a [(LogLine, Position)]);

        /// The lines of one pod: (second, text), seconds non-decreasing.
        fn pod_lines() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(0u8..3, 1..25)
        }

        fn positioned(steps: &[u8], pod: Option<u32>) -> Vec<(LogLine, Position)> {
            let mut second = 0i64;
            let mut previous: Option<Position> = None;
            steps
                .iter()
                .enumerate()
                .map(|(i, step)| {
                    second += i64::from(*step);
                    let ts = Timestamp::from_second(1_700_000_000 + second).unwrap();
                    let ordinal = match previous {
                        Some(p) if p.ts == Some(ts) => p.ordinal + 1,
                        _ => 1,
                    };
                    let position = Position {
                        ts: Some(ts),
                        ordinal,
                    };
                    previous = Some(position);
                    let mut line = LogLine::new(Some(ts), format!("{pod:?}-{i}"));
                    if let Some(index) = pod {
                        line = line.with_pod_index(index);
                    }
                    (line, position)
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
            #[test]
            fn every_line_is_kept_once_whoever_writes_it(
                pods in proptest::collection::vec(pod_lines(), 1..3),
                cuts in proptest::collection::vec(1usize..6, 64),
                order in proptest::collection::vec(0usize..64, 128),
                late_start in 0usize..20,
            ) {
                let dir = tempfile::tempdir().unwrap();
                let path = log_file(Some(dir.path()), "sr", true).unwrap();
                let multi = pods.len() > 1;
                let lines: Vec<Vec<(LogLine, Position)>> = pods
                    .iter()
                    .enumerate()
                    .map(|(i, p)| positioned(p, multi.then_some(i as u32)))
                    .collect();
                // Each writer (process) delivers every pod's log from its start, in
                // chunks (network reads); the chunks of all writers interleave.
                let mut chunks: Vec<Vec<Chunk<'_>>> = Vec::new();
                let mut cut = cuts.iter().cycle();
                for writer in 0..2 {
                    let mut queue = Vec::new();
                    for pod in &lines {
                        let mut rest = pod.as_slice();
                        while !rest.is_empty() {
                            let n = (*cut.next().unwrap()).min(rest.len());
                            queue.push((writer, &rest[..n]));
                            rest = &rest[n..];
                        }
                    }
                    chunks.push(queue);
                }
                let writers = [LogFiles::default(), LogFiles::default()];
                let mut next = [0usize; 2];
                let mut picks = order.iter().cycle();
                let mut steps = 0;
                while next[0] < chunks[0].len() || next[1] < chunks[1].len() {
                    // The second process starts late: only the first writes at first.
                    let writer = if steps < late_start { 0 } else { picks.next().unwrap() % 2 };
                    steps += 1;
                    let writer = if next[writer] < chunks[writer].len() { writer } else { 1 - writer };
                    let (w, chunk) = chunks[writer][next[writer]];
                    writers[w].write(&path, chunk);
                    next[writer] += 1;
                }
                let raw: Vec<StoredLine> = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                for (i, pod) in lines.iter().enumerate() {
                    let index = multi.then_some(i as u32);
                    let expected: Vec<&str> = pod.iter().map(|(l, _)| l.text.as_str()).collect();
                    let kept: Vec<&str> = raw
                        .iter()
                        .filter(|s| s.line.pod_index == index)
                        .map(|s| s.line.text.as_str())
                        .collect();
                    prop_assert_eq!(kept, expected);
                }
            }
        }

        #[test]
        fn a_file_with_repeated_lines_replays_each_once() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("old.jsonl");
            let lines = positioned(&[0, 1, 1, 0, 1], None);
            let mut text = Vec::new();
            // How a file written by two processes before the lock looked: d1 d2 d3 d3 d4 d4 d5 d5.
            for i in [0, 1, 2, 2, 3, 3, 4, 4] {
                let (line, position) = &lines[i];
                encode_line(&mut text, line, position.ordinal, &mut None).unwrap();
            }
            std::fs::write(&path, text).unwrap();
            let texts: Vec<String> = read_stored(&path)
                .into_iter()
                .map(|s| s.line.text)
                .collect();
            assert_eq!(texts, ["None-0", "None-1", "None-2", "None-3", "None-4"]);
            // A process that writes after them goes on after the last line.
            let files = LogFiles::default();
            files.write(&path, &lines[3..]);
            assert_eq!(read_stored(&path).len(), 5);
            assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 8);
        }
    }

    #[test]
    fn log_files_write_each_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_file(Some(dir.path()), "sr/1", true).unwrap();
        assert!(path.ends_with("logs/sr_1.jsonl"));
        let files = LogFiles::default();
        let t1: Timestamp = "2026-01-01T00:00:01Z".parse().unwrap();
        let l = |text: &str| LogLine::new(Some(t1), text);
        files.write(
            &path,
            &[(
                l("a"),
                Position {
                    ts: Some(t1),
                    ordinal: 1,
                },
            )],
        );
        files.write(
            &path,
            &[(
                l("b"),
                Position {
                    ts: Some(t1),
                    ordinal: 2,
                },
            )],
        );
        // A second stream delivering the same lines writes nothing.
        files.write(
            &path,
            &[(
                l("a"),
                Position {
                    ts: Some(t1),
                    ordinal: 1,
                },
            )],
        );
        files.write(
            &path,
            &[(
                l("b"),
                Position {
                    ts: Some(t1),
                    ordinal: 2,
                },
            )],
        );
        let texts: Vec<String> = read_stored(&path)
            .into_iter()
            .map(|s| s.line.text)
            .collect();
        assert_eq!(texts, ["a", "b"]);
        // Another process resumes from the file.
        let other = LogFiles::default();
        other.write(
            &path,
            &[(
                l("b"),
                Position {
                    ts: Some(t1),
                    ordinal: 2,
                },
            )],
        );
        other.write(
            &path,
            &[(
                l("c"),
                Position {
                    ts: Some(t1),
                    ordinal: 3,
                },
            )],
        );
        let texts: Vec<String> = read_stored(&path)
            .into_iter()
            .map(|s| s.line.text)
            .collect();
        assert_eq!(texts, ["a", "b", "c"]);
        // One write of a batch: only the lines after the last written one.
        let at = |ordinal| Position {
            ts: Some(t1),
            ordinal,
        };
        other.write(
            &path,
            &[
                (l("b"), at(2)),
                (l("c"), at(3)),
                (l("d"), at(4)),
                (l("e"), at(5)),
            ],
        );
        let stored = read_stored(&path);
        let texts: Vec<&str> = stored.iter().map(|s| s.line.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "c", "d", "e"]);
        assert_eq!(stored[4].ordinal, 5);
        assert!(log_file(Some(dir.path()), "x", false).is_none());
    }
}
