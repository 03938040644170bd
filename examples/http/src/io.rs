//! One connection's buffered input and output over its stream, through the stream's
//! embedded-io-async 0.7 `Read` and `Write` (a `TcpStream` here; any such stream would
//! do).
//!
//! Input: requests are read in large pieces into one buffer, so a pipelined request
//! that arrives with the one before it waits there for its turn, and edge-http's
//! header reader (which asks for one byte at a time, so as never to read past a
//! request) is served from memory, not from the socket. Output: a response's status
//! line, headers and body (several small writes from edge-http) collect in one buffer
//! and go to the socket together, as one segment when they fit; the buffer is pushed
//! before the connection waits for more input, so a client is never kept waiting for a
//! response that sits here.
//!
//! `flush` pushes the buffer into the socket's send queue and does not wait for the
//! peer's acknowledgement (`TcpStream::flush` does): waiting for it after every
//! response would add a round trip, or a delayed-ACK pause, to each request.

use embedded_io_async::{ErrorType, Read, Write};

/// Bytes of input kept: the largest header block plus room for what follows it.
const INPUT: usize = crate::HEADER_LIMIT + 2048;
/// Bytes of output collected before they go to the socket.
const OUTPUT: usize = 1460;

/// What waiting for a request's header block found.
pub enum Head {
    /// A complete header block of this many bytes is at the start of the input.
    Complete(usize),
    /// The peer closed its side with no request begun.
    Closed,
    /// The peer closed its side in the middle of a request.
    Truncated,
    /// No end of the header block within [`crate::HEADER_LIMIT`] bytes.
    TooLarge,
}

/// The buffered connection (see the module docs).
///
/// It owns the stream, and has no lifetime parameter, on purpose: with one, rustc
/// cannot prove the serving future `Send` (its higher-ranked auto-trait check fails on
/// edge-http's generic futures over `&mut Io<'_>`), and tasks must be `Send`.
pub struct Io<S> {
    stream: S,
    input: [u8; INPUT],
    start: usize,
    end: usize,
    output: [u8; OUTPUT],
    /// Bytes of `output` queued.
    queued: usize,
    /// Bytes of those already in the socket.
    sent: usize,
}

impl<S: Read + Write> Io<S> {
    pub fn new(stream: S) -> Io<S> {
        Io {
            stream,
            input: [0; INPUT],
            start: 0,
            end: 0,
            output: [0; OUTPUT],
            queued: 0,
            sent: 0,
        }
    }

    /// The stream, once the connection is done with.
    pub fn into_stream(self) -> S {
        self.stream
    }

    /// Whether part of a request has arrived and not been consumed.
    pub fn has_input(&self) -> bool {
        self.end > self.start
    }

    /// The input not yet consumed.
    pub fn input(&self) -> &[u8] {
        &self.input[self.start..self.end]
    }

    /// Waits until the input holds a complete header block (ended by an empty line),
    /// reading as needed.
    ///
    /// # Errors
    ///
    /// The socket's, when reading or pushing output fails.
    pub async fn head(&mut self) -> Result<Head, S::Error> {
        let mut searched = 0;
        loop {
            let pending = &self.input[self.start..self.end];
            // A block found whole may still be too long: one read can bring more than
            // the limit at once.
            match find_end_of_head(pending, searched) {
                Some(at) if at <= crate::HEADER_LIMIT => return Ok(Head::Complete(at)),
                Some(_) => return Ok(Head::TooLarge),
                None => {}
            }
            searched = pending.len().saturating_sub(3);
            if pending.len() >= crate::HEADER_LIMIT {
                return Ok(Head::TooLarge);
            }
            if self.read_more().await? == 0 {
                return Ok(if self.has_input() {
                    Head::Truncated
                } else {
                    Head::Closed
                });
            }
        }
    }

    /// Pushes what is queued for output, then reads more input (compacting the buffer
    /// first if the unread part is not at its start). Returns how many bytes came;
    /// 0 at the end of the peer's stream.
    async fn read_more(&mut self) -> Result<usize, S::Error> {
        self.push().await?;
        if self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.stream.read(&mut self.input[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Sends what is queued for output to the socket.
    ///
    /// # Errors
    ///
    /// The socket's.
    ///
    /// Cancel-safe, like [`head`](Self::head) (which pushes before it reads): each
    /// `write` moves bytes into the socket in one step, and `sent` records them, so a
    /// push dropped half-way resumes where it stopped and no byte is lost or sent twice.
    pub async fn push(&mut self) -> Result<(), S::Error> {
        while self.sent < self.queued {
            self.sent += self
                .stream
                .write(&self.output[self.sent..self.queued])
                .await?;
        }
        self.queued = 0;
        self.sent = 0;
        Ok(())
    }

    /// Queues `bytes` for output (pushing when the buffer fills).
    ///
    /// # Errors
    ///
    /// The socket's.
    pub async fn queue(&mut self, mut bytes: &[u8]) -> Result<(), S::Error> {
        while !bytes.is_empty() {
            if self.queued == OUTPUT {
                self.push().await?;
            }
            let n = bytes.len().min(OUTPUT - self.queued);
            self.output[self.queued..self.queued + n].copy_from_slice(&bytes[..n]);
            self.queued += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

/// Where the first "\r\n\r\n" in `bytes` ends (its length from the start), looking
/// from `from` on.
fn find_end_of_head(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| from + at + 4)
}

impl<S: ErrorType> ErrorType for Io<S> {
    type Error = S::Error;
}

impl<S: Read + Write> Read for Io<S> {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, S::Error> {
        if buffer.is_empty() {
            return Ok(0);
        }
        if !self.has_input() && self.read_more().await? == 0 {
            return Ok(0);
        }
        let n = buffer.len().min(self.end - self.start);
        buffer[..n].copy_from_slice(&self.input[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

impl<S: Read + Write> Write for Io<S> {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, S::Error> {
        self.queue(bytes).await?;
        Ok(bytes.len())
    }

    /// Pushes to the socket's send queue; see the module docs.
    async fn flush(&mut self) -> Result<(), S::Error> {
        self.push().await
    }
}
