//! The memcached meta protocol: encoding requests and parsing responses.
//!
//! Pure functions over byte buffers, no I/O. Only the commands cachekit sends
//! are covered: `mg` (get, exists, touch, remaining TTL), `ms`, `md` and `mn`;
//! see <https://github.com/memcached/memcached/blob/master/doc/protocol.txt>.
//!
//! Every request with a key carries the flags `O<opaque>` and `k`, which
//! memcached copies back into its response (`mg foo v O7 k` is answered
//! `VA 3 O7 kfoo`), and the parser returns that [`Echo`] with each response,
//! so that the connection can check each response against its request rather
//! than trust the order alone. `mn` takes no flags and `MN` carries none; nor
//! do the error lines (`SERVER_ERROR`, `CLIENT_ERROR`, `ERROR`).

use std::fmt;

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

impl Request<'_> {
    /// The request's key; `None` for [`Request::Noop`].
    fn key(&self) -> Option<&str> {
        match *self {
            Request::Get { key }
            | Request::Exists { key }
            | Request::Set { key, .. }
            | Request::Delete { key }
            | Request::Touch { key, .. } => Some(key),
            #[cfg(test)]
            Request::TtlOf { key } => Some(key),
            Request::Noop => None,
        }
    }
}

/// What a response echoes of its request (the `O<opaque>` and `k` flags), or
/// what a request expects its response to echo.
///
/// The key is kept as its CRC-32C, so that checking costs no copy of the key
/// and no allocation. That is enough: the opaque token already tells apart
/// the requests in flight on a connection (each has its own), so an answer
/// repeated, lost or meant for another request fails on the token; the key's
/// checksum adds a check that the answer is about the key asked for. Two
/// different keys of the same length differing in at most 4 consecutive
/// bytes (`user:1`, `user:2`) never share a CRC-32C, and other pairs of keys
/// share it with a chance of one in 2^32 (a wrong answer is a server's
/// mistake, not crafted to collide).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Echo {
    /// The opaque token, `O<token>`, as a number; `None` if absent.
    pub(crate) opaque: Option<u32>,
    /// The CRC-32C of the key echoed by `k<key>`; `None` if absent.
    pub(crate) key: Option<u32>,
}

impl Echo {
    /// What the response to `request`, sent with the opaque token `opaque`,
    /// echoes: the token and the key, or nothing for [`Request::Noop`].
    pub(crate) fn of(request: &Request<'_>, opaque: u32) -> Echo {
        match request.key() {
            Some(key) => Echo {
                opaque: Some(opaque),
                key: Some(crc32c::crc32c(key.as_bytes())),
            },
            None => Echo::default(),
        }
    }

    /// Checks that `response`, which echoed `echoed`, answers the request
    /// that expects this echo. An error line (`SERVER_ERROR`, `CLIENT_ERROR`,
    /// `ERROR`) carries no echo and is taken as the answer of whichever
    /// request it comes for.
    pub(crate) fn check(self, response: &Response, echoed: Echo) -> Result<(), ProtocolError> {
        if self == echoed
            || matches!(
                response,
                Response::ServerError(_) | Response::ClientError(_) | Response::Error
            )
        {
            Ok(())
        } else {
            Err(ProtocolError::Mismatch {
                expected: self,
                echoed,
            })
        }
    }
}

impl fmt::Display for Echo {
    /// As `O<opaque>, key CRC-32C <hex>`, with `no opaque` or `no key` for
    /// what is absent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.opaque {
            Some(opaque) => write!(f, "O{opaque}")?,
            None => f.write_str("no opaque")?,
        }
        match self.key {
            Some(key) => write!(f, ", key CRC-32C {key:08x}"),
            None => f.write_str(", no key"),
        }
    }
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
    /// A response does not echo the opaque token and key of the request it
    /// comes for (see [`Echo`]): it answers another request, so the
    /// responses are out of step with the requests.
    #[error(
        "a response echoes {echoed}, its request expects {expected}: the responses are out of step"
    )]
    Mismatch {
        /// What the request expects.
        expected: Echo,
        /// What the response echoed.
        echoed: Echo,
    },
}

/// Appends the encoding of `request` to `out`, with the opaque token
/// `opaque` and the `k` flag if it has a key (see [`Echo::of`]).
pub(crate) fn encode(request: &Request<'_>, opaque: u32, out: &mut BytesMut) {
    let (verb, key): (&[u8], &str) = match *request {
        Request::Get { key } | Request::Exists { key } | Request::Touch { key, .. } => {
            (b"mg ", key)
        }
        #[cfg(test)]
        Request::TtlOf { key } => (b"mg ", key),
        Request::Set { key, .. } => (b"ms ", key),
        Request::Delete { key } => (b"md ", key),
        Request::Noop => {
            out.put_slice(b"mn\r\n");
            return;
        }
    };
    let value = match *request {
        Request::Set { value, .. } => value,
        _ => &[],
    };
    // Verb, spaces, flags, numbers and line ends take less than 64 bytes.
    out.reserve(key.len() + value.len() + 64);
    out.put_slice(verb);
    out.put_slice(key.as_bytes());
    match *request {
        Request::Get { .. } => out.put_slice(b" v"),
        Request::Set { ttl, .. } => {
            out.put_u8(b' ');
            put_decimal(out, value.len() as u64);
            out.put_slice(b" T");
            put_decimal(out, ttl.into());
        }
        Request::Touch { ttl, .. } => {
            out.put_slice(b" T");
            put_decimal(out, ttl.into());
        }
        #[cfg(test)]
        Request::TtlOf { .. } => out.put_slice(b" t"),
        Request::Exists { .. } | Request::Delete { .. } | Request::Noop => {}
    }
    out.put_slice(b" O");
    put_decimal(out, opaque.into());
    out.put_slice(b" k\r\n");
    if let Request::Set { .. } = request {
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
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

/// Parses one complete response from the front of `buf` and consumes it,
/// returning it with what it echoed; `Ok(None)`, with `buf` untouched, if
/// `buf` does not hold a complete one yet.
///
/// A value is delimited by its announced length, so it may hold any bytes,
/// `\r\n` included. A key echoed by `k<key>` is the bytes of its token, up to
/// the next space or the line end (keys are printable ASCII without spaces).
pub(crate) fn parse(buf: &mut BytesMut) -> Result<Option<(Response, Echo)>, ProtocolError> {
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
            let Some(Flags { echo, .. }) = flags(tokens) else {
                return Err(malformed(line));
            };
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
            return Ok(Some((Response::Value(value), echo)));
        }
        b"ERROR" => (Response::Error, Echo::default()),
        b"SERVER_ERROR" => (Response::ServerError(message(line, code)), Echo::default()),
        b"CLIENT_ERROR" => (Response::ClientError(message(line, code)), Echo::default()),
        _ => {
            let Some(Flags { echo, ttl }) = flags(tokens) else {
                return Err(malformed(line));
            };
            let response = match (code, ttl) {
                (b"HD", None) => Response::Stored,
                (b"HD", Some(ttl)) => Response::Ttl(ttl),
                (b"EN" | b"NF", _) => Response::Miss,
                (b"NS", _) => Response::NotStored,
                (b"EX", _) => Response::Exists,
                (b"MN", _) => Response::Noop,
                _ => return Err(malformed(line)),
            };
            (response, echo)
        }
    };
    buf.advance(header);
    Ok(Some(response))
}

/// The flags of a response line that this client reads.
struct Flags {
    /// The echoed opaque token and key.
    echo: Echo,
    /// The `t` flag (remaining time to live): `Some(None)` for `t-1`
    /// (no expiry), `None` if absent.
    ttl: Option<Option<u32>>,
}

/// Reads the flags (the tokens after the code, and after the length of a
/// `VA`); `None` if an `O`, `k` or `t` flag is malformed or repeated. Other
/// flags are ignored.
fn flags<'a>(tokens: impl Iterator<Item = &'a [u8]>) -> Option<Flags> {
    let mut flags = Flags {
        echo: Echo::default(),
        ttl: None,
    };
    for token in tokens {
        let Some((&flag, rest)) = token.split_first() else {
            continue;
        };
        let repeated = match flag {
            b'O' => {
                let opaque = parse_decimal(rest).and_then(|n| u32::try_from(n).ok())?;
                flags.echo.opaque.replace(opaque).is_some()
            }
            b'k' => flags.echo.key.replace(crc32c::crc32c(rest)).is_some(),
            b't' => {
                let ttl = match rest {
                    b"-1" => None,
                    seconds => Some(parse_decimal(seconds).and_then(|s| u32::try_from(s).ok())?),
                };
                flags.ttl.replace(ttl).is_some()
            }
            _ => false,
        };
        if repeated {
            return None;
        }
    }
    Some(flags)
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

    /// The encoding of `request`, sent with opaque token 7, as a byte vector.
    fn encoded(request: Request<'_>) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(&request, 7, &mut out);
        out.to_vec()
    }

    /// What a response echoing opaque token `opaque` and key `key` carries.
    fn echo(opaque: u32, key: &str) -> Echo {
        Echo {
            opaque: Some(opaque),
            key: Some(crc32c::crc32c(key.as_bytes())),
        }
    }

    /// Parses every complete response in `bytes`, asserting nothing is left.
    fn parse_all(bytes: &[u8]) -> Vec<(Response, Echo)> {
        let mut buf = BytesMut::from(bytes);
        let mut responses = Vec::new();
        while let Some(response) = parse(&mut buf).expect("valid responses") {
            responses.push(response);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        responses
    }

    /// Every response kind, as bytes and as parsed with its echo.
    fn every_response() -> Vec<(&'static [u8], (Response, Echo))> {
        let none = Echo::default();
        vec![
            (
                b"VA 5\r\nhello\r\n",
                (Response::Value(Bytes::from_static(b"hello")), none),
            ),
            (
                b"VA 5 O1 kfoo\r\nhello\r\n",
                (
                    Response::Value(Bytes::from_static(b"hello")),
                    echo(1, "foo"),
                ),
            ),
            (b"VA 0\r\n\r\n", (Response::Value(Bytes::new()), none)),
            (
                b"VA 4 f0 O4294967295 ka:b\r\na\r\nb\r\n",
                (
                    Response::Value(Bytes::from_static(b"a\r\nb")),
                    echo(u32::MAX, "a:b"),
                ),
            ),
            (b"HD\r\n", (Response::Stored, none)),
            (b"HD O2 kfoo\r\n", (Response::Stored, echo(2, "foo"))),
            (b"EN\r\n", (Response::Miss, none)),
            (b"EN O0 kfoo\r\n", (Response::Miss, echo(0, "foo"))),
            (b"NF O6 kfoo\r\n", (Response::Miss, echo(6, "foo"))),
            (b"NS O3 kx\r\n", (Response::NotStored, echo(3, "x"))),
            (b"EX\r\n", (Response::Exists, none)),
            (b"MN\r\n", (Response::Noop, none)),
            (b"HD t-1\r\n", (Response::Ttl(None), none)),
            (
                b"HD t3600 O9 kfoo\r\n",
                (Response::Ttl(Some(3600)), echo(9, "foo")),
            ),
            // memcached echoes the flags in the order of the request's.
            (
                b"HD kfoo t0 O4\r\n",
                (Response::Ttl(Some(0)), echo(4, "foo")),
            ),
            (
                b"SERVER_ERROR object too large for cache\r\n",
                (
                    Response::ServerError("object too large for cache".to_owned()),
                    none,
                ),
            ),
            (
                b"CLIENT_ERROR bad data chunk\r\n",
                (Response::ClientError("bad data chunk".to_owned()), none),
            ),
            (b"ERROR\r\n", (Response::Error, none)),
        ]
    }

    #[test]
    fn every_request_encodes_exactly() {
        let cases: [(Request<'_>, &[u8]); 9] = [
            (Request::Get { key: "a:b" }, b"mg a:b v O7 k\r\n"),
            (Request::Exists { key: "k" }, b"mg k O7 k\r\n"),
            (
                Request::Set {
                    key: "k",
                    value: b"v\r\n1",
                    ttl: 60,
                },
                b"ms k 4 T60 O7 k\r\nv\r\n1\r\n",
            ),
            (
                Request::Set {
                    key: "k",
                    value: b"",
                    ttl: 0,
                },
                b"ms k 0 T0 O7 k\r\n\r\n",
            ),
            (Request::Delete { key: "k" }, b"md k O7 k\r\n"),
            (
                Request::Touch {
                    key: "k",
                    ttl: 4_294_967_295,
                },
                b"mg k T4294967295 O7 k\r\n",
            ),
            (Request::Touch { key: "k", ttl: 0 }, b"mg k T0 O7 k\r\n"),
            (Request::TtlOf { key: "k" }, b"mg k t O7 k\r\n"),
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
    fn the_opaque_token_is_encoded_in_full() {
        for (opaque, expected) in [
            (0, &b"mg k v O0 k\r\n"[..]),
            (u32::MAX, b"mg k v O4294967295 k\r\n"),
        ] {
            let mut out = BytesMut::new();
            encode(&Request::Get { key: "k" }, opaque, &mut out);
            assert_eq!(&out[..], expected);
        }
    }

    #[test]
    fn requests_append_to_the_buffer() {
        let mut out = BytesMut::from(&b"mn\r\n"[..]);
        encode(&Request::Get { key: "k" }, 1, &mut out);
        assert_eq!(&out[..], b"mn\r\nmg k v O1 k\r\n");
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
        let expected: Vec<(Response, Echo)> =
            cases.into_iter().map(|(_, response)| response).collect();
        assert_eq!(responses, expected);
        assert!(buf.is_empty());
    }

    #[test]
    fn binary_values_are_delimited_by_length() {
        let value: Vec<u8> = b"\r\nEN\r\nVA 3\r\n\0\xff\r\n".to_vec();
        let mut bytes = format!("VA {} O1 kk\r\n", value.len()).into_bytes();
        bytes.extend_from_slice(&value);
        bytes.extend_from_slice(b"\r\nEN O2 kk\r\n");
        assert_eq!(
            parse_all(&bytes),
            [
                (Response::Value(Bytes::from(value)), echo(1, "k")),
                (Response::Miss, echo(2, "k"))
            ]
        );
    }

    #[test]
    fn large_values_are_not_copied() {
        let value = vec![7_u8; SHARE_MIN];
        let mut buf = BytesMut::from(&format!("VA {} O1 kk\r\n", value.len()).into_bytes()[..]);
        let start = buf.len();
        buf.extend_from_slice(&value);
        buf.extend_from_slice(b"\r\n");
        let data = buf[start..].as_ptr();
        let Ok(Some((Response::Value(parsed), echoed))) = parse(&mut buf) else {
            panic!("a value");
        };
        assert_eq!(parsed, value);
        assert_eq!(echoed, echo(1, "k"));
        assert_eq!(parsed.as_ptr(), data, "split off the read buffer");
    }

    #[test]
    fn the_echoed_key_is_the_whole_token_and_only_it() {
        // Every printable ASCII byte but the space, as memcached echoes it.
        let key: String = (0x21_u8..=0x7e).map(char::from).collect();
        let line = format!("HD O1 k{key} t-1\r\n");
        assert_eq!(
            parse_all(line.as_bytes()),
            [(Response::Ttl(None), echo(1, &key))]
        );
        // A key that looks like flags, or like a prefix of another key.
        for (line, key) in [
            (&b"HD O1 kt5\r\n"[..], "t5"),
            (b"HD O1 kO2\r\n", "O2"),
            (b"HD O1 kfoo\r\n", "foo"),
            (b"HD O1 k\r\n", ""),
        ] {
            assert_eq!(
                parse_all(line),
                [(Response::Stored, echo(1, key))],
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        for other in ["fo", "foo ", "fooo", "Foo", "oof"] {
            assert_ne!(echo(1, "foo"), echo(1, other), "{other:?}");
        }
    }

    #[test]
    fn an_echo_is_checked_against_its_request() {
        let get = Request::Get { key: "foo" };
        let expected = Echo::of(&get, 5);
        assert_eq!(expected, echo(5, "foo"));
        let hit = Response::Value(Bytes::from_static(b"bar"));
        let parsed = |line: &[u8]| parse_all(line).remove(0);

        let (response, echoed) = parsed(b"VA 3 O5 kfoo\r\nbar\r\n");
        assert_eq!(expected.check(&response, echoed), Ok(()));

        for wrong in [
            &b"VA 3 O4 kfoo\r\nbar\r\n"[..],
            b"VA 3 O5 kbar\r\nbar\r\n",
            b"VA 3 O5\r\nbar\r\n",
            b"VA 3 kfoo\r\nbar\r\n",
            b"VA 3\r\nbar\r\n",
            b"EN O6 kfoo\r\n",
            b"MN\r\n",
        ] {
            let (response, echoed) = parsed(wrong);
            assert_eq!(
                expected.check(&response, echoed),
                Err(ProtocolError::Mismatch { expected, echoed }),
                "{:?}",
                String::from_utf8_lossy(wrong)
            );
        }
        assert_eq!(parsed(b"VA 3 O5 kfoo\r\nbar\r\n").0, hit);

        // Error lines carry no echo: they answer whichever request.
        for line in [
            &b"SERVER_ERROR out of memory\r\n"[..],
            b"CLIENT_ERROR bad data chunk\r\n",
            b"ERROR\r\n",
        ] {
            let (response, echoed) = parsed(line);
            assert_eq!(expected.check(&response, echoed), Ok(()));
        }

        // `mn` expects `MN` and nothing echoed.
        let noop = Echo::of(&Request::Noop, 6);
        assert_eq!(noop, Echo::default());
        let (response, echoed) = parsed(b"MN\r\n");
        assert_eq!(noop.check(&response, echoed), Ok(()));
        let (response, echoed) = parsed(b"HD O6 kfoo\r\n");
        assert!(noop.check(&response, echoed).is_err());
    }

    #[test]
    fn a_mismatch_names_both_echoes() {
        let error = ProtocolError::Mismatch {
            expected: echo(5, "foo"),
            echoed: Echo::default(),
        };
        let message = error.to_string();
        assert!(message.contains("O5"), "{message}");
        assert!(message.contains("no opaque, no key"), "{message}");
        assert!(
            message.contains(&format!("{:08x}", crc32c::crc32c(b"foo"))),
            "{message}"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let cases: [&[u8]; 22] = [
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
            b"HD O\r\n",
            b"HD Ox kfoo\r\n",
            b"EN O-1 kfoo\r\n",
            b"EN O4294967296 kfoo\r\n",
            b"HD O1 O1 kfoo\r\n",
            b"HD O1 kfoo kfoo\r\n",
            b"VA 1 O1 O2 kfoo\r\nx\r\n",
            b"HD t1 t1\r\n",
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
        let alphabet = b"VAHDENFSXMRTOCLI_ t-0123456789k\r\n\xff";
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
