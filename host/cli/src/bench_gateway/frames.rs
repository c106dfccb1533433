//! The bytes the load generator reads: a server's frames are unmasked and (from this
//! host) never fragmented, so the generator finds each frame's bounds in its read buffer
//! (with the gateway's own codec, `ws_codec`) and looks at the payload where it lies,
//! never copying it and never parsing its JSON. A delivered message is recognised by the
//! marker its sender put at the start of its content, and the send time that follows it is
//! read as digits. Pure, so the parsing is tested here on bytes.

use guildhall_server::ws_codec::decode_header;
use memchr::memmem;

/// What the senders' messages start with: `gw:{send time, unix µs}:{number} ...`.
pub const CONTENT_PREFIX: &str = "gw:";

/// A complete frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameBounds {
    pub opcode: u8,
    /// Where the payload starts and how long it is.
    pub payload_at: usize,
    pub payload_len: usize,
}

impl FrameBounds {
    /// The whole frame's length (header and payload).
    pub fn len(&self) -> usize {
        self.payload_at + self.payload_len
    }
}

/// The first frame of `buf`: `Ok(None)` while it is incomplete; an error for what a server
/// must not send (a masked frame, a fragment, reserved bits).
pub fn next_frame(buf: &[u8]) -> Result<Option<FrameBounds>, &'static str> {
    let Some(header) = decode_header(buf) else { return Ok(None) };
    if header.reserved_bits() != 0 {
        return Err("reserved bits set");
    }
    if !header.fin() || header.opcode() == 0 {
        return Err("a fragmented message (the host sends whole frames)");
    }
    if header.mask.is_some() {
        return Err("a masked frame from the server");
    }
    let payload_len = usize::try_from(header.payload_len).map_err(|_| "a frame larger than memory")?;
    let frame = FrameBounds { opcode: header.opcode(), payload_at: header.payload_at, payload_len };
    Ok((buf.len() >= frame.len()).then_some(frame))
}

/// Finds the benchmark's messages in dispatches.
pub struct Scanner {
    marker: memmem::Finder<'static>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner { marker: memmem::Finder::new(b"\"content\":\"gw:") }
    }
}

impl Scanner {
    /// The send time (unix µs) of a benchmark message in this dispatch, if it is one.
    pub fn send_time_us(&self, json: &[u8]) -> Option<u64> {
        let at = self.marker.find(json)? + self.marker.needle().len();
        let digits = json[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        json[at..at + digits].iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
    }
}

/// The sequence number a dispatch ends with (`..."s":42}`), read backwards from its end.
pub fn trailing_seq(json: &[u8]) -> Option<u64> {
    let body = json.strip_suffix(b"}")?;
    let digits = body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || !body[..body.len() - digits].ends_with(b"\"s\":") {
        return None;
    }
    std::str::from_utf8(&body[body.len() - digits..]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use guildhall_server::ws_codec::opcode;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        guildhall_server::ws_codec::put_header(&mut out, 0x80 | opcode, payload.len(), None);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_of_every_length_form_are_found_whole_and_not_before() {
        for len in [0, 1, 125, 126, 1000, 65_535, 65_536, 200_000] {
            let payload = vec![b'x'; len];
            let bytes = [server_frame(opcode::TEXT, &payload), server_frame(opcode::PING, b"p")].concat();
            let first = next_frame(&bytes).unwrap().unwrap();
            assert_eq!((first.opcode, first.payload_len), (opcode::TEXT, len));
            assert_eq!(&bytes[first.payload_at..first.len()], payload.as_slice());
            let second = next_frame(&bytes[first.len()..]).unwrap().unwrap();
            assert_eq!((second.opcode, &bytes[first.len() + second.payload_at..]), (opcode::PING, &b"p"[..]));
            for cut in [0, 1, first.payload_at - 1, first.len() - 1] {
                if cut < first.len() {
                    assert_eq!(next_frame(&bytes[..cut]), Ok(None), "len {len}, cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn what_a_server_must_not_send_is_an_error() {
        assert!(next_frame(&[0x01, 0x00]).is_err(), "a first fragment");
        assert!(next_frame(&[0x80, 0x00]).is_err(), "a continuation");
        assert!(next_frame(&[0x81, 0x80, 0, 0, 0, 0]).is_err(), "masked");
        assert!(next_frame(&[0xC1, 0x00]).is_err(), "RSV1 (no extension was agreed)");
    }

    #[test]
    fn the_send_time_and_sequence_are_read_from_a_dispatch() {
        let scanner = Scanner::default();
        let dispatch = br#"{"op":0,"t":"MESSAGE_CREATE","d":{"id":"1","content":"gw:1765000000123456:7 the raid","tts":false},"s":42}"#;
        assert_eq!(scanner.send_time_us(dispatch), Some(1_765_000_000_123_456));
        assert_eq!(trailing_seq(dispatch), Some(42));
        let other = br#"{"op":0,"t":"MESSAGE_CREATE","d":{"content":"hello gw:5"},"s":3}"#;
        assert_eq!(scanner.send_time_us(other), None, "the marker only counts at the content's start");
        assert_eq!(scanner.send_time_us(br#"{"d":{"content":"gw:x"}}"#), None, "no digits, no time");
        assert_eq!(scanner.send_time_us(br#"{"d":{"content":"gw:99999999999999999999999"}}"#), None, "overflow");
        assert_eq!(trailing_seq(br#"{"op":11}"#), None);
    }
}
