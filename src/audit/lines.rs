//! Reading newline-terminated lines with a length cap: a huge line is skipped (and reported), never buffered whole.

use std::io::{self, BufRead};

/// One line read from the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line (without its newline) is in the buffer; the last line of the input may lack the newline.
    Complete,
    /// The line was longer than the cap; it has been consumed and discarded.
    Oversized,
    /// End of input.
    End,
}

/// Reads the next line into `buffer` (cleared first), consuming at most `max_bytes` into memory.
pub fn read_capped_line(
    reader: &mut impl BufRead,
    buffer: &mut Vec<u8>,
    max_bytes: usize,
) -> io::Result<Line> {
    buffer.clear();
    let mut oversized = false;
    let mut read_any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok(match (read_any, oversized) {
                (false, _) => Line::End,
                (true, true) => Line::Oversized,
                (true, false) => Line::Complete,
            });
        }
        read_any = true;
        let (chunk, found_newline) = match memchr::memchr(b'\n', available) {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        if !oversized {
            if buffer.len() + chunk.len() > max_bytes {
                oversized = true;
                buffer.clear();
            } else {
                buffer.extend_from_slice(chunk);
            }
        }
        let consumed = chunk.len() + usize::from(found_newline);
        reader.consume(consumed);
        if found_newline {
            return Ok(if oversized {
                Line::Oversized
            } else {
                Line::Complete
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_and_reading_goes_on() {
        let input = format!("short\n{}\nafter\nlast", "x".repeat(100));
        // A tiny internal buffer makes lines span several fill_buf calls.
        let mut reader = io::BufReader::with_capacity(7, input.as_bytes());
        let mut buffer = Vec::new();
        let mut read = |reader: &mut io::BufReader<&[u8]>| {
            let line = read_capped_line(reader, &mut buffer, 20).unwrap();
            (line, String::from_utf8(buffer.clone()).unwrap())
        };
        assert_eq!(read(&mut reader), (Line::Complete, "short".into()));
        assert_eq!(read(&mut reader), (Line::Oversized, String::new()));
        assert_eq!(read(&mut reader), (Line::Complete, "after".into()));
        assert_eq!(read(&mut reader), (Line::Complete, "last".into()));
        assert_eq!(read(&mut reader).0, Line::End);
    }

    #[test]
    fn empty_lines_are_lines() {
        let mut reader = io::BufReader::new(&b"\n\nx\n"[..]);
        let mut buffer = Vec::new();
        assert_eq!(
            read_capped_line(&mut reader, &mut buffer, 10).unwrap(),
            Line::Complete
        );
        assert!(buffer.is_empty());
        assert_eq!(
            read_capped_line(&mut reader, &mut buffer, 10).unwrap(),
            Line::Complete
        );
        assert_eq!(
            read_capped_line(&mut reader, &mut buffer, 10).unwrap(),
            Line::Complete
        );
        assert_eq!(buffer, b"x");
        assert_eq!(
            read_capped_line(&mut reader, &mut buffer, 10).unwrap(),
            Line::End
        );
    }
}
