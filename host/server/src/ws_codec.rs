//! WebSocket frames (RFC 6455) as the gateway's relays read and write them, sans-IO: a
//! client's frames are found and unmasked where they lie in a read buffer, and a server
//! frame's header is made in a few bytes beside a payload that is never copied.
//!
//! Why not a WebSocket crate here: a relay is to read thousands of connections into one
//! buffer it shares (a connection holds no buffer while it is idle) and write each
//! connection's pending frames in one write. fastwebsockets (the handshake, and today's
//! reader and writer) keeps a buffer and a task per connection; this is the part of the
//! protocol that must not. It is small, and tested on its own (a fuzz target is to come
//! with its use).

use std::borrow::Cow;

/// Opcodes (RFC 6455, 5.2).
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Close codes a client's error is answered with (RFC 6455, 7.4.1).
pub const PROTOCOL_ERROR: u16 = 1002;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const TOO_BIG: u16 = 1009;

/// One client frame, unmasked in place.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFrame {
    pub fin: bool,
    pub opcode: u8,
    /// Where its payload lies in the buffer, and the whole frame's length.
    pub payload: std::ops::Range<usize>,
    pub len: usize,
}

/// Why a client's bytes are not a frame the server takes: the close code to answer with.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameError {
    pub code: u16,
    pub reason: &'static str,
}

const fn error(code: u16, reason: &'static str) -> FrameError {
    FrameError { code, reason }
}

/// A frame's header, as it lies at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN, the reserved bits and the opcode.
    pub first: u8,
    pub mask: Option<[u8; 4]>,
    /// Where the payload starts, and how long the header says it is.
    pub payload_at: usize,
    pub payload_len: u64,
}

impl Header {
    pub fn fin(&self) -> bool {
        self.first & 0x80 != 0
    }
    pub fn reserved_bits(&self) -> u8 {
        self.first & 0x70
    }
    pub fn opcode(&self) -> u8 {
        self.first & 0x0F
    }
}

/// The header at the start of `buf`; `None` while it is incomplete.
pub fn decode_header(buf: &[u8]) -> Option<Header> {
    let [first, second, ..] = *buf else { return None };
    let (length_at, payload_len) = match second & 0x7F {
        126 => (4, u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().expect("2 bytes")))),
        127 => (10, u64::from_be_bytes(buf.get(2..10)?.try_into().expect("8 bytes"))),
        short => (2, u64::from(short)),
    };
    let (mask, payload_at) = match second & 0x80 {
        0 => (None, length_at),
        _ => (Some(buf.get(length_at..length_at + 4)?.try_into().expect("4 bytes")), length_at + 4),
    };
    Some(Header { first, mask, payload_at, payload_len })
}

/// Appends a header: `first` (FIN, reserved bits, opcode), the length of the payload in its
/// shortest form, and the mask if there is one (a client's frames have one, a server's not).
pub fn put_header(out: &mut Vec<u8>, first: u8, payload_len: usize, mask: Option<[u8; 4]>) {
    let masked = if mask.is_some() { 0x80 } else { 0 };
    out.push(first);
    match payload_len {
        0..=125 => out.push(masked | payload_len as u8),
        126..=0xFFFF => {
            out.push(masked | 126);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out.push(masked | 127);
            out.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
}

/// Appends a client's frame, masked as RFC 6455 requires (load generators and tests).
pub fn put_client_frame(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: [u8; 4]) {
    put_header(out, first, payload.len(), Some(mask));
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// The first frame of `buf`, unmasked in place: `Ok(None)` while it is incomplete. A frame
/// whose payload is longer than `max_payload` is refused as soon as its header says so.
pub fn decode_client(buf: &mut [u8], max_payload: usize) -> Result<Option<ClientFrame>, FrameError> {
    let Some(header) = decode_header(buf) else { return Ok(None) };
    let (fin, opcode) = (header.fin(), header.opcode());
    if header.reserved_bits() != 0 {
        return Err(error(PROTOCOL_ERROR, "reserved bits set"));
    }
    let Some(mask) = header.mask else {
        return Err(error(PROTOCOL_ERROR, "an unmasked client frame"));
    };
    match opcode {
        opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {}
        opcode::CLOSE | opcode::PING | opcode::PONG => {}
        _ => return Err(error(PROTOCOL_ERROR, "an unknown opcode")),
    }
    let control = opcode & 0x8 != 0;
    if control && (!fin || header.payload_len > 125) {
        return Err(error(PROTOCOL_ERROR, "a fragmented or long control frame"));
    }
    if header.payload_len > max_payload as u64 {
        return Err(error(TOO_BIG, "payload too large"));
    }
    let payload_at = header.payload_at;
    let len = payload_at + header.payload_len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    for (i, byte) in buf[payload_at..len].iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    Ok(Some(ClientFrame { fin, opcode, payload: payload_at..len, len }))
}

/// A data message being reassembled from fragments (at most `max` bytes in all).
#[derive(Debug, Default)]
pub struct Reassembly {
    partial: Option<(u8, Vec<u8>)>,
}

/// A whole message from the client. A whole frame's payload is borrowed from the buffer;
/// only a fragmented message is copied (rare: clients send whole frames).
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Text(Cow<'a, [u8]>),
    Binary(Cow<'a, [u8]>),
    Close(Option<u16>),
    Ping(&'a [u8]),
    Pong,
    /// A fragment was taken; the message is not whole yet.
    Partial,
}

impl Reassembly {
    /// Takes one frame (as [`decode_client`] left it in `buf`).
    pub fn take<'a>(&mut self, frame: &ClientFrame, buf: &'a [u8], max: usize) -> Result<Message<'a>, FrameError> {
        let payload = &buf[frame.payload.clone()];
        let message = match (frame.opcode, frame.fin, self.partial.as_mut()) {
            (opcode::CLOSE, _, _) => match payload.len() {
                0 => Message::Close(None),
                1 => return Err(error(PROTOCOL_ERROR, "a close frame of one byte")),
                _ => Message::Close(Some(u16::from_be_bytes([payload[0], payload[1]]))),
            },
            (opcode::PING, _, _) => Message::Ping(payload),
            (opcode::PONG, _, _) => Message::Pong,
            (opcode::TEXT | opcode::BINARY, _, Some(_)) => {
                return Err(error(PROTOCOL_ERROR, "a new message inside a fragmented one"))
            }
            (opcode::CONTINUATION, _, None) => return Err(error(PROTOCOL_ERROR, "a continuation without a message")),
            (opcode::TEXT, true, None) => Message::Text(Cow::Borrowed(payload)),
            (opcode::BINARY, true, None) => Message::Binary(Cow::Borrowed(payload)),
            (opcode @ (opcode::TEXT | opcode::BINARY), false, None) => {
                self.partial = Some((opcode, payload.to_vec()));
                Message::Partial
            }
            (_, _, None) => return Err(error(PROTOCOL_ERROR, "an unknown opcode")),
            (_, fin, Some((_, parts))) => {
                if parts.len() + payload.len() > max {
                    return Err(error(TOO_BIG, "payload too large"));
                }
                parts.extend_from_slice(payload);
                if !fin {
                    return Ok(Message::Partial);
                }
                let (opcode, whole) = self.partial.take().expect("matched");
                match opcode {
                    opcode::TEXT => Message::Text(Cow::Owned(whole)),
                    _ => Message::Binary(Cow::Owned(whole)),
                }
            }
        };
        if let Message::Text(text) = &message {
            if std::str::from_utf8(text).is_err() {
                return Err(error(INVALID_PAYLOAD, "a text message that is not UTF-8"));
            }
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        put_client_frame(&mut out, first, payload, mask);
        out
    }

    #[test]
    fn client_frames_of_every_length_form_unmask_in_place_and_not_before_they_are_whole() {
        for len in [0, 1, 125, 126, 4000, 65_535, 65_536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut bytes = client_frame(0x82, &payload, [9, 8, 7, 6]);
            let whole = bytes.len();
            for cut in [0, 1, 2, 5, whole - 1] {
                if cut < whole {
                    assert_eq!(decode_client(&mut bytes.clone()[..cut], 1 << 20), Ok(None), "len {len} cut {cut}");
                }
            }
            bytes.extend_from_slice(&client_frame(0x89, b"next", [1, 1, 1, 1]));
            let frame = decode_client(&mut bytes, 1 << 20).unwrap().unwrap();
            assert_eq!((frame.fin, frame.opcode, frame.len), (true, opcode::BINARY, whole));
            assert_eq!(&bytes[frame.payload.clone()], payload.as_slice());
            let next = decode_client(&mut bytes[whole..], 1 << 20).unwrap().unwrap();
            assert_eq!(&bytes[whole..][next.payload], b"next");
        }
    }

    #[test]
    fn what_a_client_must_not_send_is_refused_with_its_close_code() {
        let refused = |mut bytes: Vec<u8>, max| decode_client(&mut bytes, max).unwrap_err().code;
        assert_eq!(refused(vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'], 100), PROTOCOL_ERROR, "unmasked");
        assert_eq!(refused(client_frame(0xC1, b"x", [0; 4]), 100), PROTOCOL_ERROR, "RSV1");
        assert_eq!(refused(client_frame(0x83, b"x", [0; 4]), 100), PROTOCOL_ERROR, "opcode 3");
        assert_eq!(refused(client_frame(0x09, b"x", [0; 4]), 100), PROTOCOL_ERROR, "a fragmented ping");
        assert_eq!(refused(client_frame(0x89, &[0; 126], [0; 4]), 1000), PROTOCOL_ERROR, "a long ping");
        // Refused from the header alone, before the payload arrives.
        let header_only = client_frame(0x81, &[b'a'; 5000], [0; 4])[..8].to_vec();
        assert_eq!(refused(header_only, 4096), TOO_BIG);
    }

    #[test]
    fn fragments_reassemble_around_control_frames_within_the_limit() {
        let mut stream = Vec::new();
        stream.extend(client_frame(0x01, b"{\"op\":", [1, 2, 3, 4]));
        stream.extend(client_frame(0x89, b"ping", [5, 6, 7, 8]));
        stream.extend(client_frame(0x00, b"1,", [1, 1, 1, 1]));
        stream.extend(client_frame(0x80, b"\"d\":null}", [2, 2, 2, 2]));
        let mut reassembly = Reassembly::default();
        let mut seen = Vec::new();
        let mut at = 0;
        while let Some(frame) = decode_client(&mut stream[at..], 4096).unwrap() {
            let message = reassembly.take(&frame, &stream[at..], 4096).unwrap();
            seen.push(format!("{message:?}"));
            at += frame.len;
        }
        assert_eq!(at, stream.len());
        let whole = Message::Text(Cow::Owned(b"{\"op\":1,\"d\":null}".to_vec()));
        assert_eq!(seen, ["Partial", &format!("{:?}", Message::Ping(b"ping")), "Partial", &format!("{whole:?}")]);

        let mut orphan = client_frame(0x80, b"x", [0; 4]);
        let frame = decode_client(&mut orphan, 100).unwrap().unwrap();
        assert_eq!(Reassembly::default().take(&frame, &orphan, 100).unwrap_err().code, PROTOCOL_ERROR);

        let mut too_long = client_frame(0x01, &[b'a'; 60], [0; 4]);
        too_long.extend(client_frame(0x80, &[b'a'; 60], [0; 4]));
        let mut reassembly = Reassembly::default();
        let first = decode_client(&mut too_long, 100).unwrap().unwrap();
        assert_eq!(reassembly.take(&first, &too_long, 100), Ok(Message::Partial));
        let rest = &mut too_long[first.len..];
        let second = decode_client(rest, 100).unwrap().unwrap();
        assert_eq!(reassembly.take(&second, rest, 100).unwrap_err().code, TOO_BIG, "the message, not each fragment");

        let mut bad_utf8 = client_frame(0x81, &[0xFF, 0xFE], [0; 4]);
        let frame = decode_client(&mut bad_utf8, 100).unwrap().unwrap();
        assert_eq!(Reassembly::default().take(&frame, &bad_utf8, 100).unwrap_err().code, INVALID_PAYLOAD);
    }

    #[test]
    fn headers_say_the_length_in_the_shortest_form_and_read_back() {
        let header = |first, len, mask| {
            let mut out = Vec::new();
            put_header(&mut out, first, len, mask);
            out
        };
        assert_eq!(header(0x81, 5, None), [0x81, 5]);
        assert_eq!(header(0x82, 300, None), [0x82, 126, 1, 44]);
        assert_eq!(header(0x81, 70_000, None), [0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(header(0x81, 5, Some([1, 2, 3, 4])), [0x81, 0x85, 1, 2, 3, 4]);
        for (len, mask) in [(0, None), (125, Some([9; 4])), (126, None), (65_536, Some([7; 4]))] {
            let bytes = header(0x82, len, mask);
            let read = decode_header(&bytes).unwrap();
            assert_eq!((read.opcode(), read.fin(), read.mask, read.payload_len), (0x2, true, mask, len as u64));
            assert_eq!(read.payload_at, bytes.len());
            assert_eq!(decode_header(&bytes[..bytes.len() - 1]), None, "incomplete");
        }
    }
}
