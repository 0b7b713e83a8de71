//! RFC 6587 framing of syslog over a stream: octet counting (`LEN SP MSG`) and newline-delimited.
//!
//! **Boundary:** bytes from the network. The framer never panics and never holds more than
//! `frame_bytes_max` plus one read of input: a frame longer than the limit is cut to the
//! limit (marked `truncated`) and the rest of it is skipped. Each frame picks its own method
//! by its first byte, as RFC 6587 section 3.4 allows: a digit starts an octet count.

/// One message cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    /// The sender's frame was longer than the limit; `bytes` holds its start.
    pub truncated: bool,
}

/// Digits an octet count may have before the frame is treated as newline-delimited.
const COUNT_DIGITS_MAX: usize = 10;

#[derive(Debug)]
enum State {
    /// At a frame boundary.
    Start,
    /// Reading a newline-delimited frame.
    Line,
    /// Reading the octet count's digits.
    Count(usize),
    /// Reading an octet-counted frame with this many bytes still to come.
    Counted(usize),
    /// Skipping the rest of an oversized frame: until newline, or this many bytes.
    SkipLine,
    SkipCounted(usize),
}

/// Cuts frames from a byte stream fed in arbitrary pieces.
#[derive(Debug)]
pub struct Framer {
    max: usize,
    state: State,
    current: Vec<u8>,
    truncated: bool,
}

impl Framer {
    pub fn new(frame_bytes_max: usize) -> Framer {
        Framer {
            max: frame_bytes_max.max(1),
            state: State::Start,
            current: Vec::new(),
            truncated: false,
        }
    }

    /// Feeds bytes; appends every frame they complete to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<Frame>) {
        while !input.is_empty() {
            match self.state {
                State::Start => {
                    // Blank lines and stray NULs between frames carry nothing.
                    let skip = input
                        .iter()
                        .take_while(|b| matches!(b, b'\n' | b'\r' | b'\0'))
                        .count();
                    input = &input[skip..];
                    match input.first() {
                        None => {}
                        Some(b) if b.is_ascii_digit() => self.state = State::Count(0),
                        Some(_) => self.state = State::Line,
                    }
                }
                State::Line => match input.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        self.append(&input[..i]);
                        input = &input[i + 1..];
                        self.finish(out);
                    }
                    None => {
                        self.append(input);
                        input = &[];
                        if self.truncated {
                            // Cut at the limit: deliver the start now, skip to the newline.
                            self.finish(out);
                            self.state = State::SkipLine;
                        }
                    }
                },
                State::Count(digits) => {
                    let b = input[0];
                    if b.is_ascii_digit() && digits < COUNT_DIGITS_MAX {
                        self.current.push(b);
                        self.state = State::Count(digits + 1);
                        input = &input[1..];
                    } else if b == b' ' && digits > 0 {
                        input = &input[1..];
                        let len = std::str::from_utf8(&self.current)
                            .ok()
                            .and_then(|s| s.parse::<usize>().ok())
                            .unwrap_or(0);
                        self.current.clear();
                        if len == 0 {
                            self.state = State::Start;
                        } else {
                            self.state = State::Counted(len);
                        }
                    } else {
                        // Not an octet count after all: the digits begin a plain line.
                        if self.current.len() > self.max {
                            self.current.truncate(self.max);
                            self.truncated = true;
                        }
                        self.state = State::Line;
                    }
                }
                State::Counted(remaining) => {
                    let n = remaining.min(input.len());
                    self.append(&input[..n]);
                    input = &input[n..];
                    let remaining = remaining - n;
                    if remaining == 0 {
                        self.finish(out);
                    } else if self.truncated {
                        self.finish(out);
                        self.state = State::SkipCounted(remaining);
                    } else {
                        self.state = State::Counted(remaining);
                    }
                }
                State::SkipLine => match input.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        input = &input[i + 1..];
                        self.state = State::Start;
                    }
                    None => input = &[],
                },
                State::SkipCounted(remaining) => {
                    let n = remaining.min(input.len());
                    input = &input[n..];
                    self.state = match remaining - n {
                        0 => State::Start,
                        left => State::SkipCounted(left),
                    };
                }
            }
        }
    }

    /// The end of the stream: a partial newline-delimited frame still counts as a message.
    pub fn finish_stream(&mut self, out: &mut Vec<Frame>) {
        match self.state {
            State::Line | State::Count(_) if !self.current.is_empty() => {
                if self.current.len() > self.max {
                    self.current.truncate(self.max);
                    self.truncated = true;
                }
                self.finish(out);
            }
            State::Counted(_) if !self.current.is_empty() => {
                // The sender promised more than it sent.
                self.truncated = true;
                self.finish(out);
            }
            _ => {}
        }
        self.state = State::Start;
        self.current.clear();
    }

    /// Appends up to the limit; marks the frame truncated when bytes had to be left out.
    fn append(&mut self, bytes: &[u8]) {
        let room = self.max.saturating_sub(self.current.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.current
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish(&mut self, out: &mut Vec<Frame>) {
        let mut bytes = std::mem::take(&mut self.current);
        while matches!(bytes.last(), Some(b'\r' | b'\n')) {
            bytes.pop();
        }
        if !bytes.is_empty() {
            out.push(Frame {
                bytes,
                truncated: self.truncated,
            });
        }
        self.truncated = false;
        self.state = State::Start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(max: usize, pieces: &[&[u8]]) -> Vec<(String, bool)> {
        let mut framer = Framer::new(max);
        let mut out = Vec::new();
        for piece in pieces {
            framer.push(piece, &mut out);
        }
        framer.finish_stream(&mut out);
        out.into_iter()
            .map(|f| (String::from_utf8_lossy(&f.bytes).into_owned(), f.truncated))
            .collect()
    }

    fn ok(texts: &[&str]) -> Vec<(String, bool)> {
        texts.iter().map(|t| (t.to_string(), false)).collect()
    }

    #[test]
    fn newline_and_octet_counted_frames_mix() {
        assert_eq!(frames(100, &[b"<13>a\n<13>b\r\n"]), ok(&["<13>a", "<13>b"]));
        assert_eq!(
            frames(100, &[b"5 <13>a7 <13>b c"]),
            ok(&["<13>a", "<13>b c"])
        );
        assert_eq!(
            frames(100, &[b"5 <13>a<14>line\n6 <15>xy"]),
            ok(&["<13>a", "<14>line", "<15>xy"])
        );
        assert_eq!(frames(100, &[b"\n\n<13>a\n\0\n"]), ok(&["<13>a"]));
        assert_eq!(
            frames(100, &[b"12ab\n"]),
            ok(&["12ab"]),
            "digits without a space are a plain line"
        );
        assert_eq!(
            frames(100, &[b"<13>no newline at the end"]),
            ok(&["<13>no newline at the end"])
        );
    }

    #[test]
    fn oversized_frames_are_cut_and_the_rest_skipped() {
        assert_eq!(
            frames(4, &[b"<13>abcdef\n<1>x\n"]),
            vec![("<13>".into(), true), ("<1>x".into(), false)]
        );
        assert_eq!(
            frames(4, &[b"10 0123456789", b"3 abc"]),
            vec![("0123".into(), true), ("abc".into(), false)]
        );
        assert_eq!(
            frames(4, &[b"10 01234"]),
            vec![("0123".into(), true)],
            "stream ended mid-frame"
        );
    }

    proptest! {
        #[test]
        fn any_bytes_in_any_pieces_frame_the_same_and_within_the_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<usize>(), 0..16),
            max in 1usize..300,
        ) {
            let whole = frames(max, &[&bytes]);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut pieces: Vec<&[u8]> = Vec::new();
            let mut last = 0;
            for p in points {
                pieces.push(&bytes[last..p]);
                last = p;
            }
            pieces.push(&bytes[last..]);
            prop_assert_eq!(&frames(max, &pieces), &whole);
            for (text, _) in &whole {
                prop_assert!(!text.is_empty());
            }
            let mut framer = Framer::new(max);
            let mut out = Vec::new();
            framer.push(&bytes, &mut out);
            for frame in out {
                prop_assert!(frame.bytes.len() <= max);
            }
        }
    }
}
