//! Cutting a large CSV or JSON-lines file into byte ranges for parallel instances, each
//! starting at the beginning of a record (in JSON lines every line end ends one: a JSON string
//! cannot hold a raw line break, so quotes are not counted).
//!
//! A cut near `k · len / n` moves on to the next line start that is outside quotes and follows a
//! line that is not blank (the reader skips blank lines at the start of a read): the file is
//! read once from the start, counting quote characters (an even count before a line end means
//! the line end ends a record, as `""` inside a quoted field counts twice) and line ends (so
//! each range knows the line its first record is on, for error messages). Reading the file for
//! this costs a small part of parsing it.
//!
//! ```text
//!   header ┊ records …………… ┊ records …………… ┊ records ……………
//!          0                b1                b2              len
//!   split 0: [after header, b1)   split 1: [b1, b2)   split 2: [b2, len)
//! ```

use std::io::Read;
use std::path::Path;

/// Files smaller than this per split are read whole.
pub const MIN_SPLIT_BYTES: u64 = 16 << 20;

/// A byte range of records: where it starts, the lines before it, and where the next range
/// starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The first byte of its first record (0: the file's start, its header included).
    pub start: u64,
    /// Lines before `start`.
    pub lines_before: u64,
    /// The first byte of the next range's first record (the file's length for the last).
    pub end: u64,
}

/// `n` ranges of the CSV file at `path` that together hold its records, or `None` when it is
/// smaller than `min` bytes per range or cannot be cut that often (records longer than a
/// range).
pub fn csv_ranges(path: &Path, n: usize, min: u64) -> std::io::Result<Option<Vec<Range>>> {
    ranges(path, n, min, true)
}

/// [`csv_ranges`] for a JSON-lines file: any line end ends a record.
pub fn json_ranges(path: &Path, n: usize, min: u64) -> std::io::Result<Option<Vec<Range>>> {
    ranges(path, n, min, false)
}

/// Ranges cut after line ends (outside quotes, when `quoted` fields may hold line breaks).
fn ranges(path: &Path, n: usize, min: u64, quoted: bool) -> std::io::Result<Option<Vec<Range>>> {
    let len = std::fs::metadata(path)?.len();
    if n < 2 || len < min.saturating_mul(n as u64) {
        return Ok(None);
    }
    let targets: Vec<u64> = (1..n as u64).map(|k| k * len / n as u64).collect();
    let mut cuts: Vec<(u64, u64)> = Vec::with_capacity(targets.len());
    let mut file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let (mut offset, mut quotes, mut lines) = (0u64, 0u64, 0u64);
    // where the last line end was (a line end right after it ends a blank line)
    let mut last_line_end: Option<u64> = None;
    let mut chunk = vec![0u8; 1 << 20];
    'read: loop {
        let read = file.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        for i in memchr::memchr2_iter(b'"', b'\n', &chunk[..read]) {
            if chunk[i] == b'"' {
                quotes += u64::from(quoted);
                continue;
            }
            lines += 1;
            let at = offset + i as u64;
            let next = at + 1;
            let blank = at == 0 || last_line_end == Some(at - 1);
            last_line_end = Some(at);
            // a line end outside quotes at or past the next target, of a line that is not
            // blank (the reader skips blank lines at the start of a read, so a cut after one
            // would hand the next range's first record to this range too): a cut after it
            if quotes % 2 == 0 && !blank && targets.get(cuts.len()).is_some_and(|t| next >= *t) && next < len {
                cuts.push((next, lines));
                if cuts.len() == targets.len() {
                    break 'read;
                }
            }
        }
        offset += read as u64;
    }
    if cuts.len() != targets.len() || cuts.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Ok(None);
    }
    let mut ranges = Vec::with_capacity(n);
    let mut start = (0, 0);
    for cut in cuts {
        ranges.push(Range { start: start.0, lines_before: start.1, end: cut.0 });
        start = cut;
    }
    ranges.push(Range { start: start.0, lines_before: start.1, end: len });
    Ok(Some(ranges))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(text: &str, n: usize) -> Option<Vec<Range>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, text).unwrap();
        csv_ranges(&path, n, 1).unwrap()
    }

    #[test]
    fn ranges_start_at_records_outside_quotes() {
        let text = "a,b\n1,x\n2,\"two\nlines\"\n3,y\n4,z\n";
        let ranges = cut(text, 3).unwrap();
        assert_eq!(ranges.len(), 3);
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges.last().unwrap().end, text.len() as u64);
        for w in ranges.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &ranges[1..] {
            let at = r.start as usize;
            assert_eq!(&text[at - 1..at], "\n", "{r:?}");
            // never inside the quoted field
            assert!(!text[at..].starts_with("lines"), "{r:?}");
            assert_eq!(text[..at].matches('\n').count() as u64, r.lines_before);
        }
    }

    #[test]
    fn json_lines_are_cut_at_any_line_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        // an odd number of quote characters on a line (escaped inside a string)
        let text = "{\"a\": \"say \\\"hi\"}\n{\"a\": \"b\"}\n{\"a\": \"c\"}\n{\"a\": \"d\"}\n";
        std::fs::write(&path, text).unwrap();
        let ranges = json_ranges(&path, 2, 1).unwrap().unwrap();
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges[1].start, text.find("{\"a\": \"c").unwrap() as u64, "{ranges:?}");
        assert_eq!(ranges[1].lines_before, 2);
        assert_eq!(ranges[1].end, text.len() as u64);
        // counting quotes would have found no cut outside them
        assert_eq!(csv_ranges(&path, 2, 1).unwrap(), None);
    }

    #[test]
    fn small_files_and_long_records_are_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, "a\n1\n2\n").unwrap();
        assert_eq!(csv_ranges(&path, 2, 1 << 20).unwrap(), None);
        // one quoted record spanning the whole file: no record starts past the targets
        assert_eq!(cut("a\n\"1\n2\n3\n4\n5\n6\"\n", 4), None);
    }
}
