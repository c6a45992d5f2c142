//! HTTP/1.1 requests from bytes: a pure parser with hard limits (head 8 KiB, body 4 KiB), so
//! the connection code only reads, and the parser can be fuzzed on its own.

/// Largest request line plus headers.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest body (`Content-Length`; the API takes a few bytes of JSON); chunked bodies are refused.
pub const MAX_BODY: usize = 4 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    pub query: String,
    /// `HTTP/1.0` requests close after their answer unless they ask to keep it alive.
    pub http10: bool,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after the answer.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(|v| v.to_ascii_lowercase());
        match conn.as_deref() {
            Some(v) if v.contains("close") => false,
            Some(v) if v.contains("keep-alive") => true,
            _ => !self.http10,
        }
    }
}

/// Why a request is refused, with the status code it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub status: u16,
    pub reason: String,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refused {
    Refused { status, reason: reason.into() }
}

/// What the bytes read so far hold.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// A whole request and how many bytes it took (the rest belongs to the next one).
    Complete(Request, usize),
    /// More bytes are needed.
    Incomplete,
}

/// Parse one request from the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, Refused> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(refuse(431, "request head over 8 KiB"));
        }
        return Ok(Parsed::Incomplete);
    };
    if head_end > MAX_HEAD {
        return Err(refuse(431, "request head over 8 KiB"));
    }
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| refuse(400, "request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refuse(400, "the request line is not `METHOD /path HTTP/1.x`"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(refuse(400, "bad method"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(refuse(505, "only HTTP/1.0 and HTTP/1.1")),
    };
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(refuse(400, "the target must be a path starting with /"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for l in lines {
        if headers.len() == MAX_HEADERS {
            return Err(refuse(431, "more than 64 headers"));
        }
        let (name, value) = l.split_once(':').ok_or_else(|| refuse(400, "a header line without ':'"))?;
        if name.is_empty() || name.bytes().any(|b| !(b.is_ascii_alphanumeric() || b"-_".contains(&b))) {
            return Err(refuse(400, "bad header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut req =
        Request { method: method.into(), path: path.into(), query: query.into(), http10, headers, body: Vec::new() };
    if req.header("transfer-encoding").is_some() {
        return Err(refuse(411, "chunked bodies are not accepted: send Content-Length"));
    }
    // Two lengths are how request smuggling starts (RFC 9112 §6.3): refuse, whatever they say.
    if req.headers.iter().filter(|(n, _)| n == "content-length").count() > 1 {
        return Err(refuse(400, "more than one Content-Length"));
    }
    let length = match req.header("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| refuse(400, "Content-Length is not a number"))?,
    };
    if length > MAX_BODY {
        return Err(refuse(413, "request body over 4 KiB"));
    }
    let start = head_end + 4;
    let Some(body) = buf.get(start..start + length) else { return Ok(Parsed::Incomplete) };
    req.body = body.to_vec();
    Ok(Parsed::Complete(req, start + length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_content_lengths_are_refused() {
        let r = parse(b"POST /x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}");
        assert!(matches!(r, Err(ref e) if e.status == 400), "{r:?}");
        let r = parse(b"POST /x HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 3\r\n\r\n{}x");
        assert!(matches!(r, Err(ref e) if e.status == 400), "{r:?}");
    }

    fn complete(b: &[u8]) -> (Request, usize) {
        match parse(b) {
            Ok(Parsed::Complete(r, n)) => (r, n),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_its_query_headers_body_and_the_next_one_pipelined() {
        let b = b"POST /api/x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.0\r\n\r\n";
        let (r, n) = complete(b);
        assert_eq!((r.method.as_str(), r.path.as_str(), r.query.as_str()), ("POST", "/api/x", "y=1"));
        assert_eq!(r.header("host"), Some("a"));
        assert_eq!(r.body, b"abc");
        assert!(r.keep_alive());
        let (r2, _) = complete(&b[n..]);
        assert!(r2.http10 && !r2.keep_alive());
    }

    #[test]
    fn partial_input_waits_and_bad_input_gets_its_status() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost"), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"), Ok(Parsed::Incomplete));
        let status = |b: &[u8]| parse(b).err().map(|e| e.status);
        assert_eq!(status(&vec![b'a'; MAX_HEAD + 1]), Some(431));
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n"), Some(413));
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET / HTTP/2\r\n\r\n"), Some(505));
        assert_eq!(status(b"GET nopath HTTP/1.1\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"), Some(400));
        assert_eq!(status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Some(411));
        assert_eq!(status(b"G\xffT / HTTP/1.1\r\n\r\n"), Some(400));
    }
}
