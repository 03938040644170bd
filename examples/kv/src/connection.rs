//! One client connection's buffers and its request loop, without the socket.
//!
//! The binary moves bytes: it reads into [`Connection::buffer`], reports them with
//! [`Connection::received`], calls [`Connection::process`], and writes
//! [`Connection::output`] in one go. `process` answers every complete request that is
//! buffered (pipelining: the replies come in request order and leave in one write), and
//! stops early when the replies pass [`FLUSH_AT`] bytes so that a long pipeline does
//! not pile up its replies in memory.
//!
//! The input buffer grows (fallibly) to hold the largest request seen, up to a 1 MiB
//! value plus its framing, and shrinks back once that request is answered.

use crate::command::{self, After, Args, OOM};
use crate::resp::{self, OutOfMemory, Parsed};
use crate::store::Store;
use alloc::vec::Vec;
use core::ops::Range;

/// The least room offered to a read (and the buffer's size to start with).
pub const READ_CHUNK: usize = 16 << 10;
/// Replies are sent once they pass this many bytes, even mid-pipeline.
pub const FLUSH_AT: usize = 64 << 10;
/// An input buffer larger than this is given back once empty.
const KEEP_INPUT: usize = 64 << 10;
/// An output buffer larger than this is given back once sent.
const KEEP_OUTPUT: usize = 256 << 10;
/// Room always kept in the output buffer for one error reply.
const ERROR_ROOM: usize = 256;

/// What the connection does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Send the output, then read more input.
    Read,
    /// Send the output, then call `process` again: more requests are buffered.
    More,
    /// Send the output, then close.
    Close,
}

/// A connection's state.
#[derive(Default)]
pub struct Connection {
    /// Received bytes live in `input[start..end]`; `input.len()` is the room.
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// The buffered bytes (from `start`) the next request needs at least.
    need: usize,
    args: Vec<Range<usize>>,
    out: Vec<u8>,
}

impl Connection {
    /// A connection with no buffers yet (they are allocated on first use).
    pub fn new() -> Self {
        Self::default()
    }

    /// Room to read into: at least [`READ_CHUNK`] bytes, and enough for the request
    /// being received when its size is known.
    ///
    /// # Errors
    /// `OutOfMemory` when the heap cannot hold the request: answer [`oom_reply`] and
    /// close.
    pub fn buffer(&mut self) -> Result<&mut [u8], OutOfMemory> {
        let buffered = self.end - self.start;
        let wanted = buffered + READ_CHUNK.max(self.need.saturating_sub(buffered));
        if self.input.len() - self.start < wanted {
            // Move what is buffered to the front, then grow if that is not enough.
            self.input.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = buffered;
            if self.input.len() < wanted {
                self.input
                    .try_reserve_exact(wanted - self.input.len())
                    .map_err(|_| OutOfMemory)?;
                self.input.resize(wanted, 0);
            }
        }
        Ok(&mut self.input[self.end..])
    }

    /// `bytes` were read into the start of [`buffer`](Self::buffer).
    pub fn received(&mut self, bytes: usize) {
        self.end = (self.end + bytes).min(self.input.len());
    }

    /// Answers the buffered requests (see the module documentation).
    pub fn process(&mut self, store: &Store, now: u64) -> Flow {
        if self.out.capacity() < ERROR_ROOM && self.out.try_reserve(ERROR_ROOM).is_err() {
            return Flow::Close;
        }
        loop {
            let buffered = self.end - self.start;
            if buffered == 0 || buffered < self.need {
                break;
            }
            let input = &self.input[self.start..self.end];
            match resp::parse(input, &mut self.args) {
                Ok(Parsed::Complete { consumed }) => {
                    self.start += consumed;
                    self.need = 0;
                    if !self.args.is_empty() {
                        let args = Args::new(input, &self.args);
                        if command::execute(store, args, now, &mut self.out) == After::Close {
                            return Flow::Close;
                        }
                    }
                    if self.out.len() >= FLUSH_AT {
                        return Flow::More;
                    }
                }
                Ok(Parsed::Incomplete { need }) => {
                    self.need = need;
                    break;
                }
                Err(resp::ProtocolError::OutOfMemory) => {
                    let _ = resp::error(&mut self.out, OOM);
                    return Flow::Close;
                }
                Err(error) => {
                    let _ = resp::error_display(&mut self.out, "ERR ", &error);
                    return Flow::Close;
                }
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.input.len() > KEEP_INPUT {
                self.input = Vec::new();
            }
        }
        Flow::Read
    }

    /// The replies to send.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// The output was sent.
    pub fn sent(&mut self) {
        self.out.clear();
        if self.out.capacity() > KEEP_OUTPUT {
            self.out = Vec::new();
        }
    }
}

/// What to send when [`Connection::buffer`] fails, before closing.
pub fn oom_reply() -> &'static [u8] {
    b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
}
