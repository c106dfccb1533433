//! Discord's `compress=zlib-stream` transport compression: one zlib stream per connection,
//! every message compressed up to a sync flush (so that it ends with `00 00 FF FF` and the
//! client can inflate it at once) and sent as a binary frame. The stream's window carries
//! over from message to message, which is what makes it pay: dispatches repeat each other.
//!
//! It is per connection, so a compressed delivery costs a compression per session; the
//! dispatch itself is still serialized once. `guildhall_zlib_*` metrics count the bytes
//! before and after and the time spent.

use flate2::{Compress, Compression, FlushCompress, Status};

pub struct ZlibStream {
    deflate: Compress,
    out: Vec<u8>,
}

impl ZlibStream {
    pub fn new() -> ZlibStream {
        // Level 1: most of the ratio on gateway JSON at a fraction of the CPU of level 6.
        ZlibStream { deflate: Compress::new(Compression::fast(), true), out: Vec::with_capacity(4096) }
    }

    /// `message` (never empty: a gateway payload) compressed and sync-flushed; valid
    /// until the next call.
    pub fn compress(&mut self, message: &[u8]) -> &[u8] {
        const SYNC_MARK: [u8; 4] = [0, 0, 0xFF, 0xFF];
        debug_assert!(!message.is_empty(), "an empty message adds nothing to flush");
        self.out.clear();
        self.out.reserve(message.len() / 2 + 64);
        let start = self.deflate.total_in();
        loop {
            let (consumed, produced) = ((self.deflate.total_in() - start) as usize, self.out.len());
            let status = self
                .deflate
                .compress_vec(&message[consumed..], &mut self.out, FlushCompress::Sync)
                .expect("deflate never fails on a valid stream");
            debug_assert!(matches!(status, Status::Ok | Status::BufError));
            let now_consumed = (self.deflate.total_in() - start) as usize;
            // Done once every byte went in and the flush's empty stored block came out.
            if now_consumed == message.len() && self.out.ends_with(&SYNC_MARK) {
                break;
            }
            let progress = now_consumed > consumed || self.out.len() > produced;
            if !progress && self.out.len() < self.out.capacity() {
                break; // nothing left to do (cannot happen for a non-empty message)
            }
            // zlib wants more than six bytes free to finish a flush in one call.
            self.out.reserve(self.out.capacity().max(256));
        }
        debug_assert!(self.out.ends_with(&SYNC_MARK), "a sync flush ends every message");
        &self.out
    }
}

impl Default for ZlibStream {
    fn default() -> ZlibStream {
        ZlibStream::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    #[test]
    fn every_message_inflates_alone_from_the_shared_stream() {
        let mut zlib = ZlibStream::new();
        let mut inflate = Decompress::new(true);
        let big: String = (0..5000).map(|i| format!("{{\"seq\":{i}}}")).collect();
        let messages = ["{\"op\":10,\"d\":{\"heartbeat_interval\":41250}}", big.as_str(), "{\"op\":11}", "{}"];
        let mut total_in = 0;
        let mut total_out = 0;
        for message in messages {
            let compressed = zlib.compress(message.as_bytes()).to_vec();
            assert!(compressed.ends_with(&[0, 0, 0xFF, 0xFF]));
            let mut out = Vec::with_capacity(message.len() + 64);
            let before = inflate.total_in();
            while ((inflate.total_in() - before) as usize) < compressed.len() {
                let at = (inflate.total_in() - before) as usize;
                out.reserve(4096);
                inflate.decompress_vec(&compressed[at..], &mut out, FlushDecompress::Sync).unwrap();
            }
            assert_eq!(out, message.as_bytes());
            total_in += message.len();
            total_out += compressed.len();
        }
        assert!(total_out * 2 < total_in, "repetitive JSON compresses: {total_out} of {total_in}");
    }
}
