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
///
/// An item stored by another client with a binary key (the `b` flag) is
/// echoed with its key in base64 and the `b` flag: that key is not compared
/// (cachekit's keys are never binary, so it cannot be decoded to one of
/// them to compare); the opaque token still ties the answer to its request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Echo {
    /// The opaque token, `O<token>`, as a number; `None` if absent.
    pub(crate) opaque: Option<u32>,
    /// The CRC-32C of the key echoed by `k<key>`; `None` if absent.
    pub(crate) key: Option<u32>,
    /// The echoed key is in base64 (the `b` flag), and not compared.
    pub(crate) base64: bool,
}

impl Echo {
    /// What the response to `request`, sent with the opaque token `opaque`,
    /// echoes: the token and the key, or nothing for [`Request::Noop`].
    pub(crate) fn of(request: &Request<'_>, opaque: u32) -> Echo {
        match request.key() {
            Some(key) => Echo {
                opaque: Some(opaque),
                key: Some(crc32c::crc32c(key.as_bytes())),
                base64: false,
            },
            None => Echo::default(),
        }
    }

    /// Checks that `response`, which echoed `echoed`, answers the request
    /// that expects this echo. An error line (`SERVER_ERROR`, `CLIENT_ERROR`,
    /// `ERROR`) carries no echo and is taken as the answer of whichever
    /// request it comes for.
    pub(crate) fn check(self, response: &Response, echoed: Echo) -> Result<(), ProtocolError> {
        let key_matches = self.key == echoed.key || (echoed.base64 && echoed.key.is_some());
        if (self.opaque == echoed.opaque && key_matches)
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
            Some(_) if self.base64 => f.write_str(", a base64 key"),
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
        "a response echoes {echoed}, its request expects {expected}: it answers another request"
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
            b'b' if rest.is_empty() => std::mem::replace(&mut flags.echo.base64, true),
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
mod fuzz_tests;
#[cfg(test)]
mod tests;
