//! The memcached meta protocol: encoding requests and parsing responses.
//!
//! Pure functions over byte buffers, no I/O. Only the commands cachekit sends
//! are covered: `mg` (get, exists, touch, remaining TTL), `ms`, `md` and `mn`;
//! see <https://github.com/memcached/memcached/blob/master/doc/protocol.txt>.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The longest response line accepted, `\r\n` included (bytes). memcached's
/// lines are far shorter; a longer one means the stream is not memcached's.
const MAX_LINE: usize = 4096;

/// The longest value accepted in a `VA` response: memcached's own ceiling for
/// its item size setting (1 GiB).
const MAX_VALUE: usize = 1 << 30;

/// Values at least this long are split off the read buffer without copying.
/// Shorter ones are copied, so that a small value kept for long (in an L1, say)
/// does not keep a whole read buffer allocated; a shared value keeps at most
/// about twice its own size alive.
const SHARE_MIN: usize = 16 * 1024;

/// How much of an unexpected line a [`ProtocolError`] quotes (bytes).
const QUOTE_MAX: usize = 64;

/// One meta-protocol request.
///
/// Keys are already validated by the caller: printable ASCII, no spaces, at
/// most 250 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    /// `mg <key> v`: the value, answered by [`Response::Value`] or [`Response::Miss`].
    Get {
        /// The key.
        key: &'a str,
    },
    /// `mg <key>`: whether the key exists, without transferring the value;
    /// answered by [`Response::Stored`] (present) or [`Response::Miss`].
    Exists {
        /// The key.
        key: &'a str,
    },
    /// `ms <key> <len> T<ttl>`: stores the value; answered by
    /// [`Response::Stored`] or [`Response::NotStored`].
    Set {
        /// The key.
        key: &'a str,
        /// The value, any bytes.
        value: &'a [u8],
        /// Seconds to live; 0 means no expiry.
        ttl: u32,
    },
    /// `md <key>`: deletes the key; answered by [`Response::Stored`] (deleted)
    /// or [`Response::Miss`] (absent).
    Delete {
        /// The key.
        key: &'a str,
    },
    /// `mg <key> T<ttl>`: resets the key's time to live; answered by
    /// [`Response::Stored`] or [`Response::Miss`].
    Touch {
        /// The key.
        key: &'a str,
        /// The new seconds to live; 0 means no expiry.
        ttl: u32,
    },
    /// `mg <key> t`: the key's remaining time to live; answered by
    /// [`Response::Ttl`] or [`Response::Miss`]. For tests.
    #[cfg(test)]
    TtlOf {
        /// The key.
        key: &'a str,
    },
    /// `mn`: does nothing; answered by [`Response::Noop`].
    Noop,
}

/// One parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response {
    /// `VA`: the value of a hit.
    Value(Bytes),
    /// `HD`: success (stored, deleted, touched, or present).
    Stored,
    /// `EN` or `NF`: the key is absent.
    Miss,
    /// `NS`: the value was not stored.
    NotStored,
    /// `EX`: a compare-and-swap conflict.
    Exists,
    /// `MN`: the answer to [`Request::Noop`].
    Noop,
    /// `HD t<secs>`: the remaining time to live in seconds; `None` if the item
    /// never expires (`t-1`).
    Ttl(Option<u32>),
    /// `SERVER_ERROR <message>`, such as "object too large for cache".
    ServerError(String),
    /// `CLIENT_ERROR <message>`: memcached could not read the request.
    ClientError(String),
    /// `ERROR`: memcached did not recognise the command.
    Error,
}

/// A byte stream that is not a valid sequence of meta-protocol responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProtocolError {
    /// No line end within [`MAX_LINE`] bytes.
    #[error("a response line is longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// A line that is not a response this client understands.
    #[error("malformed response line {0:?}")]
    Malformed(String),
    /// A value not followed by `\r\n`.
    #[error("a value is not followed by \\r\\n")]
    Unterminated,
    /// A response arrived while no request was waiting for one.
    #[error("a response arrived with no request waiting for it")]
    Unsolicited,
    /// memcached answered `CLIENT_ERROR` or `ERROR`: it may have read the
    /// rest of the stream out of step (a value taken for a command), so later
    /// responses could be matched to the wrong requests.
    #[error("memcached rejected a request ({0}); the connection may be out of step")]
    Rejected(String),
}

/// Appends the encoding of `request` to `out`.
pub(crate) fn encode(request: &Request<'_>, out: &mut BytesMut) {
    match *request {
        Request::Get { key } => command(out, b"mg ", key, b" v\r\n"),
        Request::Exists { key } => command(out, b"mg ", key, b"\r\n"),
        Request::Set { key, value, ttl } => {
            out.reserve(key.len() + value.len() + 32);
            out.put_slice(b"ms ");
            out.put_slice(key.as_bytes());
            out.put_u8(b' ');
            put_decimal(out, value.len() as u64);
            out.put_slice(b" T");
            put_decimal(out, ttl.into());
            out.put_slice(b"\r\n");
            out.put_slice(value);
            out.put_slice(b"\r\n");
        }
        Request::Delete { key } => command(out, b"md ", key, b"\r\n"),
        Request::Touch { key, ttl } => {
            out.reserve(key.len() + 16);
            out.put_slice(b"mg ");
            out.put_slice(key.as_bytes());
            out.put_slice(b" T");
            put_decimal(out, ttl.into());
            out.put_slice(b"\r\n");
        }
        #[cfg(test)]
        Request::TtlOf { key } => command(out, b"mg ", key, b" t\r\n"),
        Request::Noop => out.put_slice(b"mn\r\n"),
    }
}

/// Appends `verb`, `key` and `tail` to `out`.
fn command(out: &mut BytesMut, verb: &[u8], key: &str, tail: &[u8]) {
    out.reserve(verb.len() + key.len() + tail.len());
    out.put_slice(verb);
    out.put_slice(key.as_bytes());
    out.put_slice(tail);
}

/// Appends `number` in decimal ASCII to `out`.
fn put_decimal(out: &mut BytesMut, mut number: u64) {
    let mut digits = [0_u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

/// Parses one complete response from the front of `buf` and consumes it;
/// `Ok(None)`, with `buf` untouched, if `buf` does not hold a complete one yet.
///
/// A value is delimited by its announced length, so it may hold any bytes,
/// `\r\n` included.
pub(crate) fn parse(buf: &mut BytesMut) -> Result<Option<Response>, ProtocolError> {
    let scanned = buf.len().min(MAX_LINE);
    let Some(newline) = buf[..scanned].iter().position(|&byte| byte == b'\n') else {
        return if buf.len() >= MAX_LINE {
            Err(ProtocolError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    let Some(line) = buf[..newline].strip_suffix(b"\r") else {
        return Err(malformed(&buf[..newline]));
    };
    let header = newline + 1;
    let mut tokens = line.split(|&byte| byte == b' ');
    let code = tokens.next().unwrap_or_default();
    let response = match code {
        b"VA" => {
            let len = tokens
                .next()
                .and_then(parse_decimal)
                .filter(|&len| len <= MAX_VALUE)
                .ok_or_else(|| malformed(line))?;
            let end = header + len + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if buf[end - 2..end] != *b"\r\n" {
                return Err(ProtocolError::Unterminated);
            }
            let value = if len >= SHARE_MIN {
                buf.advance(header);
                let value = buf.split_to(len).freeze();
                buf.advance(2);
                value
            } else {
                let value = Bytes::copy_from_slice(&buf[header..header + len]);
                buf.advance(end);
                value
            };
            return Ok(Some(Response::Value(value)));
        }
        b"HD" => header_only(tokens).ok_or_else(|| malformed(line))?,
        b"EN" | b"NF" => Response::Miss,
        b"NS" => Response::NotStored,
        b"EX" => Response::Exists,
        b"MN" => Response::Noop,
        b"ERROR" => Response::Error,
        b"SERVER_ERROR" => Response::ServerError(message(line, code)),
        b"CLIENT_ERROR" => Response::ClientError(message(line, code)),
        _ => return Err(malformed(line)),
    };
    buf.advance(header);
    Ok(Some(response))
}

/// The response for an `HD` line with these flags: [`Response::Ttl`] if they
/// include `t`, else [`Response::Stored`]; `None` if the `t` flag is malformed.
fn header_only<'a>(mut flags: impl Iterator<Item = &'a [u8]>) -> Option<Response> {
    match flags.find_map(|flag| flag.strip_prefix(b"t")) {
        None => Some(Response::Stored),
        Some(b"-1") => Some(Response::Ttl(None)),
        Some(seconds) => parse_decimal(seconds)
            .and_then(|seconds| u32::try_from(seconds).ok())
            .map(|seconds| Response::Ttl(Some(seconds))),
    }
}

/// Parses unsigned decimal ASCII digits; `None` if empty, not digits, or too big.
fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0_usize, |number, &digit| {
        if digit.is_ascii_digit() {
            number
                .checked_mul(10)?
                .checked_add(usize::from(digit - b'0'))
        } else {
            None
        }
    })
}

/// The text after `code` and a space in `line`, as a string.
fn message(line: &[u8], code: &[u8]) -> String {
    String::from_utf8_lossy(line.get(code.len() + 1..).unwrap_or_default()).into_owned()
}

/// A [`ProtocolError::Malformed`] quoting the start of `line`.
fn malformed(line: &[u8]) -> ProtocolError {
    let quoted = &line[..line.len().min(QUOTE_MAX)];
    ProtocolError::Malformed(String::from_utf8_lossy(quoted).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding of `request` as a byte vector.
    fn encoded(request: Request<'_>) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(&request, &mut out);
        out.to_vec()
    }

    /// Parses every complete response in `bytes`, asserting nothing is left.
    fn parse_all(bytes: &[u8]) -> Vec<Response> {
        let mut buf = BytesMut::from(bytes);
        let mut responses = Vec::new();
        while let Some(response) = parse(&mut buf).expect("valid responses") {
            responses.push(response);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        responses
    }

    /// Every response kind, as bytes and as parsed.
    fn every_response() -> Vec<(&'static [u8], Response)> {
        vec![
            (
                b"VA 5\r\nhello\r\n",
                Response::Value(Bytes::from_static(b"hello")),
            ),
            (b"VA 0\r\n\r\n", Response::Value(Bytes::new())),
            (
                b"VA 4 f0\r\na\r\nb\r\n",
                Response::Value(Bytes::from_static(b"a\r\nb")),
            ),
            (b"HD\r\n", Response::Stored),
            (b"EN\r\n", Response::Miss),
            (b"NF\r\n", Response::Miss),
            (b"NS\r\n", Response::NotStored),
            (b"EX\r\n", Response::Exists),
            (b"MN\r\n", Response::Noop),
            (b"HD t-1\r\n", Response::Ttl(None)),
            (b"HD t3600\r\n", Response::Ttl(Some(3600))),
            (b"HD k t0\r\n", Response::Ttl(Some(0))),
            (
                b"SERVER_ERROR object too large for cache\r\n",
                Response::ServerError("object too large for cache".to_owned()),
            ),
            (
                b"CLIENT_ERROR bad data chunk\r\n",
                Response::ClientError("bad data chunk".to_owned()),
            ),
            (b"ERROR\r\n", Response::Error),
        ]
    }

    #[test]
    fn every_request_encodes_exactly() {
        let cases: [(Request<'_>, &[u8]); 9] = [
            (Request::Get { key: "a:b" }, b"mg a:b v\r\n"),
            (Request::Exists { key: "k" }, b"mg k\r\n"),
            (
                Request::Set {
                    key: "k",
                    value: b"v\r\n1",
                    ttl: 60,
                },
                b"ms k 4 T60\r\nv\r\n1\r\n",
            ),
            (
                Request::Set {
                    key: "k",
                    value: b"",
                    ttl: 0,
                },
                b"ms k 0 T0\r\n\r\n",
            ),
            (Request::Delete { key: "k" }, b"md k\r\n"),
            (
                Request::Touch {
                    key: "k",
                    ttl: 4_294_967_295,
                },
                b"mg k T4294967295\r\n",
            ),
            (Request::Touch { key: "k", ttl: 0 }, b"mg k T0\r\n"),
            (Request::TtlOf { key: "k" }, b"mg k t\r\n"),
            (Request::Noop, b"mn\r\n"),
        ];
        for (request, expected) in cases {
            assert_eq!(
                encoded(request),
                expected,
                "{request:?} encodes as {:?}",
                String::from_utf8_lossy(expected)
            );
        }
    }

    #[test]
    fn requests_append_to_the_buffer() {
        let mut out = BytesMut::from(&b"mn\r\n"[..]);
        encode(&Request::Get { key: "k" }, &mut out);
        assert_eq!(&out[..], b"mn\r\nmg k v\r\n");
    }

    #[test]
    fn every_response_kind_parses() {
        for (bytes, expected) in every_response() {
            assert_eq!(
                parse_all(bytes),
                [expected],
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn a_split_response_parses_only_when_complete() {
        for (bytes, expected) in every_response() {
            for cut in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..cut]);
                assert_eq!(parse(&mut buf), Ok(None), "{bytes:?} cut at {cut}");
                assert_eq!(
                    &buf[..],
                    &bytes[..cut],
                    "an incomplete response is not consumed"
                );
                buf.extend_from_slice(&bytes[cut..]);
                assert_eq!(parse(&mut buf), Ok(Some(expected.clone())));
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn a_stream_fed_byte_by_byte_parses_in_order() {
        let cases = every_response();
        let stream: Vec<u8> = cases.iter().flat_map(|(bytes, _)| bytes.to_vec()).collect();
        let mut buf = BytesMut::new();
        let mut responses = Vec::new();
        for &byte in &stream {
            buf.extend_from_slice(&[byte]);
            while let Some(response) = parse(&mut buf).expect("valid stream") {
                responses.push(response);
            }
        }
        let expected: Vec<Response> = cases.into_iter().map(|(_, response)| response).collect();
        assert_eq!(responses, expected);
        assert!(buf.is_empty());
    }

    #[test]
    fn binary_values_are_delimited_by_length() {
        let value: Vec<u8> = b"\r\nEN\r\nVA 3\r\n\0\xff\r\n".to_vec();
        let mut bytes = format!("VA {}\r\n", value.len()).into_bytes();
        bytes.extend_from_slice(&value);
        bytes.extend_from_slice(b"\r\nEN\r\n");
        assert_eq!(
            parse_all(&bytes),
            [Response::Value(Bytes::from(value)), Response::Miss]
        );
    }

    #[test]
    fn large_values_are_not_copied() {
        let value = vec![7_u8; SHARE_MIN];
        let mut buf = BytesMut::from(&format!("VA {}\r\n", value.len()).into_bytes()[..]);
        let start = buf.len();
        buf.extend_from_slice(&value);
        buf.extend_from_slice(b"\r\n");
        let data = buf[start..].as_ptr();
        let Ok(Some(Response::Value(parsed))) = parse(&mut buf) else {
            panic!("a value");
        };
        assert_eq!(parsed, value);
        assert_eq!(parsed.as_ptr(), data, "split off the read buffer");
    }

    #[test]
    fn garbage_is_an_error() {
        let cases: [&[u8]; 14] = [
            b"HELLO\r\n",
            b"\r\n",
            b"HD\n",
            b"VA\r\n",
            b"VA x\r\n",
            b"VA -1\r\n",
            b"VA 99999999999999999999999\r\n",
            b"VA 1073741825\r\n",
            b"VA 2\r\nabcd\r\n",
            b"HD t\r\n",
            b"HD tx\r\n",
            b"HD t-2\r\n",
            b"HD t4294967296\r\n",
            b"hd\r\n",
        ];
        for bytes in cases {
            let mut buf = BytesMut::from(bytes);
            assert!(
                parse(&mut buf).is_err(),
                "{:?} is not a valid response",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn a_line_without_end_is_an_error_once_too_long() {
        let mut buf = BytesMut::from(&vec![b'A'; MAX_LINE - 1][..]);
        assert_eq!(parse(&mut buf), Ok(None));
        buf.extend_from_slice(b"A");
        assert_eq!(parse(&mut buf), Err(ProtocolError::LineTooLong));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A fixed linear congruential generator: the same bytes on every run.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"VAHDENFSXMRTOCLI_ t-0123456789\r\n\xff";
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let len = (seed >> 58) as usize;
            let mut buf = BytesMut::with_capacity(len);
            for _ in 0..len {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                buf.put_u8(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            // At most one response per byte: the loop ends.
            for _ in 0..=len {
                match parse(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
