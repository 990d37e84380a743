//! A small blocking HTTP/1.1 client for the CLI: one request per connection, JSON in and
//! out. The CLI talks to one node at a time and needs no pooling, TLS or redirects.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

/// Largest response the CLI reads.
const RESPONSE_BYTES_MAX: u64 = 64 << 20;

/// A response: status code and parsed JSON body (`Null` when empty).
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

/// Sends `method path` with an optional JSON body to `base` (`http://host:port`).
pub(crate) fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, String> {
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("node URL {base:?} must start with http://"))?
        .trim_end_matches('/');
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot reach {base}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(70)))
        .map_err(|e| e.to_string())?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nAccept: application/json\r\n");
    if body.is_some() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    head.push_str("\r\n");
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(payload.as_bytes()));
    // Read even when sending failed: a node may answer before it has read the whole
    // request (413 for a body over its bound) and close, and its answer is what the
    // user needs, not the broken pipe that closing left the sender.
    let mut raw = Vec::new();
    let received = (&stream).take(RESPONSE_BYTES_MAX).read_to_end(&mut raw);
    match (sent, received) {
        (Ok(()), Ok(_)) => parse(&raw),
        (sent, received) => parse(&raw).map_err(|_| match sent {
            Err(e) => format!("sending to {base}: {e}"),
            Ok(()) => match received {
                Err(e) => format!("reading from {base}: {e}"),
                Ok(_) => format!("{base} closed the connection mid-answer"),
            },
        }),
    }
}

fn parse(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the node sent no HTTP header")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("the node sent no HTTP status")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(length) = content_length(&head) {
        if body.len() < length {
            return Err(format!(
                "the node's answer was cut short: {} of {length} bytes",
                body.len()
            ));
        }
        body.truncate(length);
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    Ok(Response { status, body })
}

/// The `Content-Length` a response head names, if any.
fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("content-length") {
            return None;
        }
        value.trim().parse().ok()
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunked body")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).ok_or("truncated chunk")?;
    }
}

/// Percent-encodes a path segment.
pub(crate) fn segment(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use serde_json::json;

    use super::*;

    /// A node that answers 413 after reading part of a large body and closes: the
    /// client reports the 413, not the broken pipe its unsent bytes met.
    #[test]
    fn an_answer_sent_before_the_body_was_read_is_reported_not_the_broken_pipe() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let node = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut first = vec![0; 64 << 10];
            let _ = conn.read(&mut first);
            let body = r#"{"error":{"code":"too_large","message":"at most 8 MiB"}}"#;
            let answer = format!(
                "HTTP/1.1 413 Payload Too Large\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).unwrap();
            // Dropped with most of the body unread: the kernel resets the connection.
        });
        let big = json!({"value": "x".repeat(16 << 20)});
        let r = request(&base, "POST", "/v1/buckets/b/keys/k", Some(&big)).unwrap();
        assert_eq!(r.status, 413);
        assert_eq!(r.body["error"]["code"], "too_large");
        node.join().unwrap();
    }

    #[test]
    fn a_body_shorter_than_its_content_length_is_an_error() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}";
        let e = parse(raw).err().unwrap();
        assert!(e.contains("cut short: 2 of 10"), "{e}");
        let whole = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((whole.status, whole.body), (200, json!({})));
    }
}
