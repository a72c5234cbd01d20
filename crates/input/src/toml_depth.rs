//! The nesting depth of a TOML document, measured on the parser's events before any
//! value is built.
//!
//! The `toml` crate bounds nested arrays and inline tables, but not dotted keys or table
//! headers: `a.a.a.…= 1` with 100,000 segments builds (and drops, recursively) a table
//! 100,000 levels deep. This pass follows the event stream, which has no recursion of
//! its own once entering a too-deep array or inline table is refused.

use toml_parser::parser::EventReceiver;
use toml_parser::{ErrorSink, Source, Span};

/// The byte offset where `text` first nests deeper than `max_depth` levels (the root
/// table is level 1), if it does.
pub(crate) fn too_deep(text: &str, max_depth: usize) -> Option<usize> {
    let source = Source::new(text);
    let tokens = source.lex().into_vec();
    let mut probe = Probe {
        max_depth,
        header_depth: 1,
        in_header: false,
        array_table: false,
        key_len: 0,
        value_depth: 1,
        open: Vec::new(),
        breach: None,
    };
    let mut errors: () = ();
    toml_parser::parser::parse_document(&tokens, &mut probe, &mut errors);
    probe.breach
}

/// An open array (`false`) or inline table (`true`) and its depth.
type Open = (bool, usize);

struct Probe {
    max_depth: usize,
    /// Depth of the table the current `[header]` opened (root: 1).
    header_depth: usize,
    in_header: bool,
    array_table: bool,
    /// Segments of the key being read.
    key_len: usize,
    /// Depth of the container the next value goes into.
    value_depth: usize,
    open: Vec<Open>,
    breach: Option<usize>,
}

impl Probe {
    /// Depth of the table the keys being read belong to.
    fn key_base(&self) -> usize {
        match self.open.last() {
            Some((_, depth)) => *depth,
            None => self.header_depth,
        }
    }

    fn check(&mut self, depth: usize, span: Span) -> bool {
        if depth > self.max_depth {
            self.breach.get_or_insert(span.start());
            return false;
        }
        true
    }

    fn open(&mut self, table: bool, span: Span) -> bool {
        let depth = self.value_depth + 1;
        if !self.check(depth, span) {
            return false;
        }
        self.open.push((table, depth));
        if !table {
            self.value_depth = depth;
        }
        true
    }

    fn close(&mut self) {
        self.open.pop();
        if let Some((false, depth)) = self.open.last() {
            self.value_depth = *depth;
        }
    }
}

impl EventReceiver for Probe {
    fn std_table_open(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.in_header = true;
        self.array_table = false;
        self.key_len = 0;
    }

    fn std_table_close(&mut self, span: Span, _error: &mut dyn ErrorSink) {
        self.end_header(span);
    }

    fn array_table_open(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.in_header = true;
        self.array_table = true;
        self.key_len = 0;
    }

    fn array_table_close(&mut self, span: Span, _error: &mut dyn ErrorSink) {
        self.end_header(span);
    }

    fn inline_table_open(&mut self, span: Span, _error: &mut dyn ErrorSink) -> bool {
        self.open(true, span)
    }

    fn inline_table_close(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.close();
    }

    fn array_open(&mut self, span: Span, _error: &mut dyn ErrorSink) -> bool {
        self.open(false, span)
    }

    fn array_close(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.close();
    }

    fn simple_key(
        &mut self,
        span: Span,
        _kind: Option<toml_parser::decoder::Encoding>,
        _error: &mut dyn ErrorSink,
    ) {
        self.key_len += 1;
        let depth = if self.in_header {
            1 + self.key_len
        } else {
            // `a.b.c = 1`: `a` and `b` are tables below the current one.
            self.key_base() + self.key_len - 1
        };
        self.check(depth, span);
    }

    fn key_val_sep(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.value_depth = self.key_base() + self.key_len.saturating_sub(1);
        self.key_len = 0;
    }

    fn value_sep(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        self.key_len = 0;
        if let Some((false, depth)) = self.open.last() {
            self.value_depth = *depth;
        }
    }

    fn newline(&mut self, _span: Span, _error: &mut dyn ErrorSink) {
        if self.open.is_empty() {
            self.key_len = 0;
        }
    }
}

impl Probe {
    fn end_header(&mut self, span: Span) {
        // `[a.b]` opens table b at depth 1 + 2; `[[a.b]]` an element of array b below it.
        self.header_depth = 1 + self.key_len + usize::from(self.array_table);
        self.in_header = false;
        self.key_len = 0;
        self.check(self.header_depth, span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, max: usize) -> bool {
        too_deep(text, max).is_none()
    }

    #[test]
    fn measures_keys_headers_and_inline_values() {
        // root{a{b{c}}}: 3 levels.
        assert!(depth_ok("a.b.c = 1", 3));
        assert!(!depth_ok("a.b.c = 1", 2));
        assert!(depth_ok("[a.b]\nc = 1", 3));
        assert!(!depth_ok("[a.b]\nc = 1", 2));
        // root{a[ {b} ]}: array of tables adds a level.
        assert!(depth_ok("[[a]]\nb = 1", 3));
        assert!(!depth_ok("[[a]]\nb = 1", 2));
        // root{a[[1]]}
        assert!(depth_ok("a = [[1]]", 3));
        assert!(!depth_ok("a = [[1]]", 2));
        // root{a{b{c{d}}}} through an inline table with a dotted key.
        assert!(depth_ok("a = {b.c = {d = 1}}", 4));
        assert!(!depth_ok("a = {b.c = {d = 1}}", 3));
        // Floats have dots but no depth.
        assert!(depth_ok("a = [1.5, 2.5, 3.5, 4.5]", 2));
        // Siblings do not add up.
        assert!(depth_ok("a = [[1], [2], [3]]\nb = {c = 1}\nd.e = 1", 3));
    }
}
