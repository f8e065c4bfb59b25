//! Unit tests of the meta protocol: encoding every request, parsing every
//! response, and checking echoes against requests.

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
        base64: false,
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
    let expected: Vec<(Response, Echo)> = cases.into_iter().map(|(_, response)| response).collect();
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

    // An item another client stored with a binary key echoes it in base64
    // (`b`): its opaque token is still checked, its key is not.
    let (response, echoed) = parsed(b"VA 3 O5 kZm9v b\r\nbar\r\n");
    assert_eq!(expected.check(&response, echoed), Ok(()));
    let (response, echoed) = parsed(b"VA 3 O4 kZm9v b\r\nbar\r\n");
    assert!(expected.check(&response, echoed).is_err());
    let (response, echoed) = parsed(b"VA 3 O5 b\r\nbar\r\n");
    assert!(
        expected.check(&response, echoed).is_err(),
        "a key must be echoed"
    );

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
