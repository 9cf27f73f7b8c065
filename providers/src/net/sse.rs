//! A streaming Server-Sent Events parser: bytes in, events out, any chunking.
//!
//! Follows the WHATWG event-stream rules (LF, CRLF or CR line ends, `:` comments, joined
//! multi-line `data:`, `event:`/`id:`/`retry:`), keeps partial lines across chunks, and on
//! [`SseParser::finish`] delivers a last event that lacked its closing blank line. Events
//! borrow the parser's buffers, so a long stream reuses the same few allocations.

use std::borrow::Cow;

/// One dispatched event, borrowing the parser until the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, or `"message"` when the event had none.
    pub event: &'a str,
    /// The `data:` lines joined with `\n`.
    pub data: &'a str,
    /// The last `id:` seen on the stream so far, if any.
    pub id: Option<&'a str>,
}

/// The stream broke a limit that protects memory.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line or an event's data grew beyond the configured maximum.
    #[error("SSE event larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// Default cap on one event's size (and on one unterminated line): 4 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Incremental parser; feed with [`push`](SseParser::push), drain with
/// [`next_event`](SseParser::next_event), and call [`finish`](SseParser::finish) at EOF.
#[derive(Debug)]
pub struct SseParser {
    /// Unconsumed input; bytes before `pos` have been parsed.
    buf: Vec<u8>,
    pos: usize,
    /// The previous line ended in CR: an LF at the start of the next input belongs to it.
    skip_lf: bool,
    first_line: bool,
    state: EventState,
    max_event_bytes: usize,
}

#[derive(Debug, Default)]
struct EventState {
    data: String,
    has_data: bool,
    event: String,
    has_event: bool,
    last_id: Option<String>,
    retry_ms: Option<u64>,
    /// The buffers hold a dispatched event; clear them before parsing on.
    dispatched: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser with the default size limit.
    pub fn new() -> Self {
        SseParser::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that rejects lines or events larger than `limit` bytes.
    pub fn with_max_event_bytes(limit: usize) -> Self {
        SseParser {
            buf: Vec::with_capacity(4096),
            pos: 0,
            skip_lf: false,
            first_line: true,
            state: EventState::default(),
            max_event_bytes: limit,
        }
    }

    /// Appends a chunk of the body exactly as it came off the network.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, or `None` until more input arrives.
    pub fn next_event(&mut self) -> Result<Option<SseEvent<'_>>, SseError> {
        self.state.clear_dispatched();
        loop {
            if self.skip_lf && self.pos < self.buf.len() {
                if self.buf[self.pos] == b'\n' {
                    self.pos += 1;
                }
                self.skip_lf = false;
            }
            let rest = &self.buf[self.pos..];
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if rest.len() > self.max_event_bytes {
                    return Err(SseError::TooLarge {
                        limit: self.max_event_bytes,
                    });
                }
                return Ok(None);
            };
            let start = self.pos;
            self.skip_lf = rest[end] == b'\r';
            self.pos = start + end + 1;
            let mut line = &self.buf[start..start + end];
            if self.first_line {
                self.first_line = false;
                line = line.strip_prefix(BOM).unwrap_or(line);
            }
            if self.state.process_line(line) {
                return Ok(Some(self.state.event()));
            }
            if self.state.data.len() > self.max_event_bytes {
                return Err(SseError::TooLarge {
                    limit: self.max_event_bytes,
                });
            }
        }
    }

    /// Ends the stream: parses an unterminated last line and delivers the pending event,
    /// if any, even without its closing blank line. Call after `next_event` returned `None`.
    pub fn finish(&mut self) -> Result<Option<SseEvent<'_>>, SseError> {
        self.state.clear_dispatched();
        if self.pos < self.buf.len() {
            let start = self.pos;
            self.pos = self.buf.len();
            let mut line = &self.buf[start..];
            if self.first_line {
                self.first_line = false;
                line = line.strip_prefix(BOM).unwrap_or(line);
            }
            if self.state.process_line(line) {
                return Ok(Some(self.state.event()));
            }
        }
        if self.state.data.len() > self.max_event_bytes {
            return Err(SseError::TooLarge {
                limit: self.max_event_bytes,
            });
        }
        if self.state.process_line(b"") {
            return Ok(Some(self.state.event()));
        }
        Ok(None)
    }

    /// The reconnection delay the server last asked for with `retry:`, in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.state.retry_ms
    }

    /// Bytes received but not yet parsed into complete lines.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() - self.pos
    }
}

impl EventState {
    fn clear_dispatched(&mut self) {
        if self.dispatched {
            self.dispatched = false;
            self.data.clear();
            self.has_data = false;
            self.event.clear();
            self.has_event = false;
        }
    }

    /// Applies one line; true when it dispatched an event (now held in the buffers).
    fn process_line(&mut self, line: &[u8]) -> bool {
        if line.is_empty() {
            if self.has_data {
                self.dispatched = true;
                return true;
            }
            // A blank line with no data dispatches nothing and forgets the event type.
            self.event.clear();
            self.has_event = false;
            return false;
        }
        if line[0] == b':' {
            return false;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&lossy(value));
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&lossy(value));
                self.has_event = true;
            }
            b"id" if !value.contains(&0) => {
                self.last_id = Some(lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry_ms = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
        false
    }

    fn event(&self) -> SseEvent<'_> {
        SseEvent {
            event: if self.has_event && !self.event.is_empty() {
                &self.event
            } else {
                "message"
            },
            data: &self.data,
            id: self.last_id.as_deref(),
        }
    }
}

fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Owned {
        event: String,
        data: String,
        id: Option<String>,
    }

    fn own(ev: SseEvent<'_>) -> Owned {
        Owned {
            event: ev.event.to_string(),
            data: ev.data.to_string(),
            id: ev.id.map(str::to_string),
        }
    }

    fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Owned> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c);
            while let Some(ev) = p.next_event().unwrap() {
                out.push(own(ev));
            }
        }
        if let Some(ev) = p.finish().unwrap() {
            out.push(own(ev));
        }
        out
    }

    fn parse_whole(input: &[u8]) -> Vec<Owned> {
        parse_chunks([input])
    }

    fn parse_bytewise(input: &[u8]) -> Vec<Owned> {
        parse_chunks(input.chunks(1))
    }

    fn msg(data: &str) -> Owned {
        Owned {
            event: "message".into(),
            data: data.into(),
            id: None,
        }
    }

    const MIXED: &[u8] = b": keep-alive\r\n\
data: {\"a\":1}\r\n\r\n\
event: error\ndata: line one\ndata:line two\nid: 7\n\n\
data: caf\xC3\xA9 \xE2\x82\xAC\r\r\
data: [DONE]\n\n";

    fn mixed_expected() -> Vec<Owned> {
        vec![
            msg("{\"a\":1}"),
            Owned {
                event: "error".into(),
                data: "line one\nline two".into(),
                id: Some("7".into()),
            },
            Owned {
                event: "message".into(),
                data: "café €".into(),
                id: Some("7".into()),
            },
            Owned {
                event: "message".into(),
                data: "[DONE]".into(),
                id: Some("7".into()),
            },
        ]
    }

    #[test]
    fn parses_a_mixed_stream_whole() {
        assert_eq!(parse_whole(MIXED), mixed_expected());
    }

    #[test]
    fn parses_the_same_stream_byte_by_byte() {
        assert_eq!(parse_bytewise(MIXED), mixed_expected());
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        for cut in 0..=MIXED.len() {
            let (a, b) = MIXED.split_at(cut);
            assert_eq!(parse_chunks([a, b]), mixed_expected(), "cut at {cut}");
        }
    }

    #[test]
    fn crlf_split_between_cr_and_lf_is_one_line_end() {
        // "data: x\r" | "\n\r\n": the LF after the CR must not count as a blank line.
        let events = parse_chunks([&b"data: x\r"[..], b"\ndata: y\r", b"\n\r\n"]);
        assert_eq!(events, vec![msg("x\ny")]);
    }

    #[test]
    fn final_event_without_blank_line_is_delivered() {
        assert_eq!(
            parse_whole(b"data: a\n\ndata: last"),
            vec![msg("a"), msg("last")]
        );
        assert_eq!(parse_whole(b"data: last\n"), vec![msg("last")]);
        assert_eq!(parse_bytewise(b"data: last\r\n"), vec![msg("last")]);
    }

    #[test]
    fn comments_and_unknown_fields_are_ignored() {
        let input = b":comment\nfoo: bar\ndata\ndata: x\nretry: 1500\n\n: trailing\n";
        let mut p = SseParser::new();
        p.push(input);
        let ev = own(p.next_event().unwrap().unwrap());
        // A bare "data" line contributes an empty line to the data.
        assert_eq!(ev, msg("\nx"));
        assert!(p.next_event().unwrap().is_none());
        assert!(p.finish().unwrap().is_none());
        assert_eq!(p.retry_ms(), Some(1500));
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing_and_reset_event_type() {
        let events = parse_whole(b"event: ping\n\n\n\ndata: after\n\n");
        assert_eq!(events, vec![msg("after")]);
    }

    #[test]
    fn only_one_leading_space_is_stripped_and_colons_in_values_kept() {
        let events = parse_whole(b"data:  two spaces: ok\n\n");
        assert_eq!(events, vec![msg(" two spaces: ok")]);
    }

    #[test]
    fn leading_bom_is_skipped() {
        assert_eq!(parse_bytewise(b"\xEF\xBB\xBFdata: x\n\n"), vec![msg("x")]);
    }

    #[test]
    fn oversized_lines_are_rejected() {
        let mut p = SseParser::with_max_event_bytes(16);
        p.push(b"data: 0123456789abcdefXYZ");
        assert_eq!(p.next_event(), Err(SseError::TooLarge { limit: 16 }));
        let mut p = SseParser::with_max_event_bytes(16);
        p.push(b"data: 0123456789\ndata: 0123456789\n");
        assert_eq!(p.next_event(), Err(SseError::TooLarge { limit: 16 }));
    }

    #[test]
    fn buffers_are_compacted_as_events_are_consumed() {
        let mut p = SseParser::new();
        for _ in 0..1000 {
            p.push(b"data: {\"x\":\"some payload\"}\n\n");
            while p.next_event().unwrap().is_some() {}
        }
        p.push(b"da");
        assert!(p.next_event().unwrap().is_none());
        assert_eq!(p.buffered_bytes(), 2);
        assert!(p.buf.capacity() < 8192, "buffer grew: {}", p.buf.capacity());
    }
}
