//! JSON Lines files (plain or `.gz`), read line by line with a bound: a line
//! longer than the limit is skipped to its end without being held in memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// What one read produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// A line is in the buffer (without its newline).
    Data,
    /// A line of this many bytes was longer than the limit and was skipped;
    /// the buffer holds its first `limit` bytes.
    TooLong(usize),
}

/// A bounded line reader over a file.
pub struct JsonlReader {
    path: PathBuf,
    inner: Box<dyn BufRead + Send>,
    limit: usize,
    line_no: u64,
}

impl JsonlReader {
    /// Opens `path`; names ending in `.gz` are decompressed.
    pub fn open(path: &Path, limit: usize) -> io::Result<Self> {
        let file = File::open(path)?;
        let inner: Box<dyn BufRead + Send> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(BufReader::with_capacity(
                256 * 1024,
                flate2::read::MultiGzDecoder::new(BufReader::new(file)),
            ))
        } else {
            Box::new(BufReader::with_capacity(256 * 1024, file))
        };
        Ok(Self::new(path.to_owned(), inner, limit))
    }

    pub fn new(path: PathBuf, inner: Box<dyn BufRead + Send>, limit: usize) -> Self {
        Self {
            path,
            inner,
            limit,
            line_no: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based number of the line last read.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// Reads the next line into `buf` (cleared first); `None` at the end.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<Line>> {
        buf.clear();
        let mut total = 0usize;
        let mut seen_any = false;
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            seen_any = true;
            let (part, done) = match memchr_newline(chunk) {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            let room = (self.limit + 1).saturating_sub(buf.len());
            buf.extend_from_slice(&part[..part.len().min(room)]);
            total += part.len();
            let consumed = done.unwrap_or(chunk.len());
            self.inner.consume(consumed);
            if done.is_some() {
                break;
            }
        }
        if !seen_any {
            return Ok(None);
        }
        self.line_no += 1;
        if buf.last() == Some(&b'\r') && total <= self.limit {
            buf.pop();
            total -= 1;
        }
        if total > self.limit {
            buf.truncate(self.limit);
            return Ok(Some(Line::TooLong(total)));
        }
        Ok(Some(Line::Data))
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Reads a whole small file (labels) as text lines.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    let mut s = String::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(File::open(path)?).read_to_string(&mut s)?;
    } else {
        File::open(path)?.read_to_string(&mut s)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(data: &'static [u8], limit: usize) -> JsonlReader {
        JsonlReader::new(
            "t".into(),
            Box::new(io::BufReader::with_capacity(4, data)),
            limit,
        )
    }

    #[test]
    fn lines_limits_and_crlf() {
        let mut r = reader(b"ab\r\n0123456789\n\nlast", 5);
        let mut buf = Vec::new();
        assert_eq!(r.next_line(&mut buf).unwrap(), Some(Line::Data));
        assert_eq!(buf, b"ab");
        assert_eq!(r.next_line(&mut buf).unwrap(), Some(Line::TooLong(10)));
        assert_eq!(buf, b"01234");
        assert_eq!(r.next_line(&mut buf).unwrap(), Some(Line::Data));
        assert!(buf.is_empty());
        assert_eq!(r.next_line(&mut buf).unwrap(), Some(Line::Data));
        assert_eq!(buf, b"last");
        assert_eq!(r.line_no(), 4);
        assert_eq!(r.next_line(&mut buf).unwrap(), None);
    }
}
