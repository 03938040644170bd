//! The checks a request's header block must pass before edge-http parses it: the
//! limits (431, 413) and a well-formed body length (400).
//!
//! edge-http panics on a `Content-Length` that is not a number (it unwraps the parse),
//! and a panic would stop the whole VM: bad input from the network must get a 400
//! instead. So the block is parsed here first, with httparse (the parser edge-http uses
//! itself), and handed on only once it is known to be sound.

/// Why a request is refused, and the answer it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: a request line or header that does not parse, a bad or conflicting body
    /// length, a connection closed mid-request.
    BadRequest,
    /// 408: the request was begun and not finished within the idle limit.
    Timeout,
    /// 413: a body longer than [`crate::BODY_LIMIT`].
    BodyTooLarge,
    /// 431: a header block longer than [`crate::HEADER_LIMIT`] bytes or with more than
    /// [`crate::MAX_HEADERS`] fields.
    HeadersTooLarge,
}

impl Refusal {
    /// Status code and reason phrase.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::BadRequest => (400, "Bad Request"),
            Refusal::Timeout => (408, "Request Timeout"),
            Refusal::BodyTooLarge => (413, "Content Too Large"),
            Refusal::HeadersTooLarge => (431, "Request Header Fields Too Large"),
        }
    }
}

/// Checks the header block `head` (request line to the empty line included).
///
/// # Errors
///
/// The [`Refusal`] the request gets.
pub fn check(head: &[u8]) -> Result<(), Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; crate::MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Refusal::BadRequest),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeadersTooLarge),
        Err(_) => return Err(Refusal::BadRequest),
    }
    let mut length = None;
    let mut chunked = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = content_length(header.value).ok_or(Refusal::BadRequest)?;
            if length.is_some_and(|length| length != value) {
                return Err(Refusal::BadRequest);
            }
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // The only coding edge-http decodes; anything else cannot be framed.
            if !header.value.eq_ignore_ascii_case(b"chunked") {
                return Err(Refusal::BadRequest);
            }
            chunked = true;
        }
    }
    // Both at once is how requests are smuggled past proxies (RFC 9112, 6.1).
    if chunked && length.is_some() {
        return Err(Refusal::BadRequest);
    }
    if length.is_some_and(|length| length > crate::BODY_LIMIT as u64) {
        return Err(Refusal::BodyTooLarge);
    }
    Ok(())
}

/// A Content-Length value: decimal digits only (RFC 9110, 8.6), at most 19 of them,
/// and nothing around them (edge-http parses the value as it is).
fn content_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(digits).ok()?.parse().ok()
}
