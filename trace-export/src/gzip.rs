//! Gzip on more than one thread, for the Chrome trace: one gzip member whose deflate stream
//! is made of pieces compressed independently. Each piece but the last ends on a byte
//! boundary with a full flush and refers to nothing before it, so the pieces put end to end
//! are one valid deflate stream, which every gzip reader reads (a file of several gzip
//! members is not: some trace viewers stop after the first). The check value is the pieces'
//! CRC-32s combined.
//!
//! The thread that writes the text ([`GzWriter`]) compresses pieces itself whenever more
//! than a few wait, so it never needs another thread; a thread with nothing else to do can
//! take pieces meanwhile with [`Pieces::help`]. During `profiler::stop`, the main thread
//! helps once the xplane and the report are done, and the two cores share the compression.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::sync::{Condvar, Mutex, MutexGuard};

use crc32fast::Hasher;
use flate2::{Compress, Compression, FlushCompress, Status};

/// Bytes of text per piece: large enough that the pieces compress about as well as one
/// stream, small enough that a few in flight stay a few MiB.
const PIECE: usize = 4 << 20;
/// Pieces that may wait for a helper before the writer compresses one itself.
const MAX_WAITING: usize = 2;
/// Room beyond [`PIECE`] in a piece's text buffer: a piece is handed over once it holds
/// `PIECE` bytes, and the write that gets it there must not make the buffer grow (a copy of
/// the piece, into fresh memory).
const PIECE_SLACK: usize = 256 << 10;
/// Buffers kept for reuse, of each kind: about as many as are in use at once.
const SPARE: usize = MAX_WAITING + 4;

/// The pieces of one gzip stream between the thread that writes it and its helpers.
#[derive(Default)]
pub(crate) struct Pieces {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Text handed over, not compressed yet, by piece number.
    waiting: VecDeque<(u64, Vec<u8>)>,
    /// Compressed, not written yet, by piece number.
    compressed: BTreeMap<u64, Piece>,
    /// The writer has finished (or given up): helpers return.
    closed: bool,
    /// Text buffers and compressed-piece buffers done with, for the next pieces: memory
    /// used again costs nothing, where fresh memory must be committed by the kernel.
    spare_text: Vec<Vec<u8>>,
    spare_deflate: Vec<Vec<u8>>,
}

impl State {
    /// Keeps `buffer` for reuse, emptied, if there is room.
    fn keep(spare: &mut Vec<Vec<u8>>, mut buffer: Vec<u8>) {
        if spare.len() < SPARE {
            buffer.clear();
            spare.push(buffer);
        }
    }
}

/// One compressed piece.
struct Piece {
    deflate: Vec<u8>,
    crc: Hasher,
    len: u64,
}

impl Pieces {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Compresses waiting pieces until the writer has finished.
    pub(crate) fn help(&self) {
        let mut deflater = Deflater::new();
        let mut state = self.lock();
        loop {
            let compressed;
            (state, compressed) = self.compress_oldest(state, &mut deflater);
            if compressed {
                continue;
            }
            if state.closed {
                return;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Compresses the oldest waiting piece with `deflater`, unlocked meanwhile, and tells
    /// whoever waits; false when none waits.
    fn compress_oldest<'s>(
        &'s self,
        mut state: MutexGuard<'s, State>,
        deflater: &mut Deflater,
    ) -> (MutexGuard<'s, State>, bool) {
        let Some((index, text)) = state.waiting.pop_front() else {
            return (state, false);
        };
        let out = state.spare_deflate.pop().unwrap_or_default();
        drop(state);
        let piece = deflater.compress(&text, false, out);
        let mut state = self.lock();
        state.compressed.insert(index, piece);
        State::keep(&mut state.spare_text, text);
        self.changed.notify_all();
        (state, true)
    }

    /// Closes the pieces when dropped, however its holder ends: helpers then return.
    pub(crate) fn closer(&self) -> Closer<'_> {
        Closer(self)
    }
}

/// See [`Pieces::closer`].
pub(crate) struct Closer<'p>(&'p Pieces);

impl Drop for Closer<'_> {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.changed.notify_all();
    }
}

/// A deflate compressor, reused from piece to piece: a fresh one allocates and clears its
/// window and tables each time.
struct Deflater(Compress);

impl Deflater {
    fn new() -> Self {
        Deflater(Compress::new(Compression::fast(), false))
    }

    /// Compresses `text` as one piece into `deflate` (emptied first): final, or ending with a
    /// full flush.
    fn compress(&mut self, text: &[u8], last: bool, mut deflate: Vec<u8>) -> Piece {
        let deflater = &mut self.0;
        // Each piece starts afresh, as if compressed by a new compressor.
        deflater.reset();
        deflate.clear();
        deflate.reserve(text.len() / 4 + 64);
        let flush = if last {
            FlushCompress::Finish
        } else {
            FlushCompress::Full
        };
        loop {
            let read = deflater.total_in() as usize;
            let status = deflater
                .compress_vec(&text[read..], &mut deflate, flush)
                .expect("deflate takes any input");
            let done = match status {
                Status::StreamEnd => true,
                // A flush is complete once all input is in and the output had room to spare.
                _ => {
                    !last
                        && deflater.total_in() as usize == text.len()
                        && deflate.len() < deflate.capacity()
                }
            };
            if done {
                break;
            }
            deflate.reserve(deflate.capacity().max(4096));
        }
        let mut crc = Hasher::new();
        crc.update(text);
        Piece {
            deflate,
            crc,
            len: text.len() as u64,
        }
    }
}

/// Writes one gzip member to `out`, compressing in pieces that [`Pieces::help`] may take.
pub(crate) struct GzWriter<'p, W: Write> {
    out: W,
    pieces: &'p Pieces,
    /// Helpers return once the writer is gone, also when it gives up on an error.
    _closer: Closer<'p>,
    deflater: Deflater,
    text: Vec<u8>,
    /// Pieces handed over, and written.
    handed: u64,
    written: u64,
    crc: Hasher,
    len: u64,
}

impl<'p, W: Write> GzWriter<'p, W> {
    /// A writer of one gzip member (its header written at once) to `out`.
    pub(crate) fn new(mut out: W, pieces: &'p Pieces) -> io::Result<Self> {
        let closer = pieces.closer();
        // Deflate, no flags, no time, fastest, unknown OS.
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255])?;
        Ok(GzWriter {
            out,
            pieces,
            _closer: closer,
            deflater: Deflater::new(),
            text: Vec::with_capacity(PIECE + PIECE_SLACK),
            handed: 0,
            written: 0,
            crc: Hasher::new(),
            len: 0,
        })
    }

    /// Hands the text gathered over as the next piece; compresses the oldest waiting piece
    /// here while too many wait; writes what is compressed, in order.
    fn hand_over(&mut self) -> io::Result<()> {
        let mut state = self.pieces.lock();
        let next =
            (state.spare_text.pop()).unwrap_or_else(|| Vec::with_capacity(PIECE + PIECE_SLACK));
        let text = std::mem::replace(&mut self.text, next);
        state.waiting.push_back((self.handed, text));
        self.handed += 1;
        self.pieces.changed.notify_all();
        while state.waiting.len() > MAX_WAITING {
            (state, _) = self.pieces.compress_oldest(state, &mut self.deflater);
        }
        let ready = self.take_ready(&mut state);
        drop(state);
        self.write_pieces(ready)
    }

    /// The compressed pieces next in order.
    fn take_ready(&self, state: &mut State) -> Vec<Piece> {
        let mut ready = Vec::new();
        let mut next = self.written;
        while let Some(piece) = state.compressed.remove(&next) {
            ready.push(piece);
            next += 1;
        }
        ready
    }

    fn write_pieces(&mut self, pieces: Vec<Piece>) -> io::Result<()> {
        for piece in pieces {
            self.out.write_all(&piece.deflate)?;
            self.crc.combine(&piece.crc);
            self.len += piece.len;
            self.written += 1;
            State::keep(&mut self.pieces.lock().spare_deflate, piece.deflate);
        }
        Ok(())
    }

    /// Compresses and writes the rest, then the trailer; returns `out`.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        // Every piece handed over is written before the last one, compressed here.
        while self.written < self.handed {
            let (mut state, compressed) = self
                .pieces
                .compress_oldest(self.pieces.lock(), &mut self.deflater);
            let ready = self.take_ready(&mut state);
            if !compressed && ready.is_empty() {
                // A helper has the next piece in hand.
                drop(self.pieces.changed.wait(state));
                continue;
            }
            drop(state);
            self.write_pieces(ready)?;
        }
        let text = std::mem::take(&mut self.text);
        let last = self.deflater.compress(&text, true, Vec::new());
        self.write_pieces(vec![last])?;
        let crc = std::mem::replace(&mut self.crc, Hasher::new()).finalize();
        // The length modulo 2^32, as the format keeps it.
        let trailer = [crc.to_le_bytes(), (self.len as u32).to_le_bytes()].concat();
        self.out.write_all(&trailer)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for GzWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(bytes);
        if self.text.len() >= PIECE {
            self.hand_over()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn text(len: usize) -> Vec<u8> {
        // Compressible, but not trivially: JSON-like lines with changing numbers.
        let mut text = Vec::with_capacity(len);
        let mut i = 0u64;
        while text.len() < len {
            text.extend_from_slice(
                format!("{{\"ts\":{i},\"dur\":{}}},\n", i * 7 % 1000).as_bytes(),
            );
            i += 1;
        }
        text.truncate(len);
        text
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        // One member: a reader that stops after the first gzip member must see everything.
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut decoded)
            .unwrap();
        decoded
    }

    fn written(text: &[u8], helpers: usize, write_size: usize) -> Vec<u8> {
        let pieces = Pieces::default();
        std::thread::scope(|scope| {
            for _ in 0..helpers {
                scope.spawn(|| pieces.help());
            }
            let mut writer = GzWriter::new(Vec::new(), &pieces).unwrap();
            for chunk in text.chunks(write_size) {
                writer.write_all(chunk).unwrap();
            }
            writer.finish().unwrap()
        })
    }

    #[test]
    fn one_gzip_member_whatever_the_helpers() {
        for len in [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 12_345] {
            let text = text(len);
            for helpers in [0, 2] {
                let gz = written(&text, helpers, 65_536);
                assert_eq!(gunzip(&gz), text, "{len} bytes, {helpers} helpers");
                // Compressed like one stream, give or take the pieces' fresh starts.
                let whole = {
                    let mut encoder =
                        flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
                    encoder.write_all(&text).unwrap();
                    encoder.finish().unwrap()
                };
                assert!(gz.len() <= whole.len() + whole.len() / 50 + 64, "{len}");
            }
        }
    }

    #[test]
    fn a_reused_compressor_and_buffer_compress_as_fresh_ones() {
        let texts = [text(PIECE), text(12_345), text(PIECE + 7)];
        let mut reused = Deflater::new();
        let mut out = Vec::new();
        for last in [false, true] {
            for text in &texts {
                let fresh = Deflater::new().compress(text, last, Vec::new());
                let again = reused.compress(text, last, out);
                assert!(again.deflate == fresh.deflate, "{} bytes", text.len());
                out = again.deflate;
            }
        }
    }

    #[test]
    fn helpers_return_when_the_writer_gives_up() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let pieces = Pieces::default();
        std::thread::scope(|scope| {
            scope.spawn(|| pieces.help());
            assert!(GzWriter::new(Broken, &pieces).is_err());
        });
        let pieces = Pieces::default();
        std::thread::scope(|scope| {
            scope.spawn(|| pieces.help());
            let mut writer = GzWriter::new(Vec::new(), &pieces).unwrap();
            writer.write_all(&text(3 * PIECE)).unwrap();
            drop(writer);
        });
    }
}
