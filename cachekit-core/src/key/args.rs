//! The encoding of a cached function's arguments in its keys: a serde
//! `Serializer` of its own, so that keys depend on no value codec and stay
//! the same whatever codec stores the values.
//!
//! # Version 1
//!
//! Version 1 ([`KEY_ENCODING_VERSION`]) writes, for every value bincode 2
//! accepts, exactly the bytes of bincode 2's `config::standard()` (variable
//! integers, little endian), so that keys built before this encoding existed
//! are unchanged; the one deliberate difference is maps (below). The version
//! is not written into keys.
//!
//! A *varint* is an unsigned integer `n` in 1 to 17 bytes: `n` itself when
//! `n < 251`; else a tag then `n` little endian: `251` and 2 bytes (`n` up to
//! `u16::MAX`), `252` and 4 bytes (up to `u32::MAX`), `253` and 8 bytes (up
//! to `u64::MAX`), `254` and 16 bytes. A *zigzag* varint of a signed `v` is
//! the varint of `2v` for `v >= 0` and of `-2v - 1` for `v < 0` (`-1` is `01`,
//! `42` is `54`).
//!
//! | serde data-model type | bytes |
//! |---|---|
//! | `bool` | one byte, `00` or `01` |
//! | `u8` | the byte itself (not a varint: `255` is `ff`) |
//! | `i8` | its two's complement byte (not zigzag: `-1` is `ff`) |
//! | `u16`, `u32`, `u64`, `u128` (and `usize`, as `u64`) | varint |
//! | `i16`, `i32`, `i64`, `i128` (and `isize`, as `i64`) | zigzag varint |
//! | `f32`, `f64` | the IEEE 754 bits, little endian (`-0.0` and each NaN as they are) |
//! | `char` | its UTF-8 bytes, 1 to 4, without a length (as bincode 2 writes it) |
//! | `str`, `bytes` | varint length in bytes, then the bytes |
//! | `Option` | `00` for `None`; `01` then the value for `Some` |
//! | unit, unit struct | nothing |
//! | newtype struct | the value |
//! | unit variant | varint variant index |
//! | newtype, tuple and struct variants | varint variant index, then the fields in order |
//! | tuple, tuple struct, struct | the fields in order, without a length or names |
//! | sequence (`Vec`, slice, sets) | varint element count, then the elements in order |
//! | map | varint entry count, then the entries (key, then value) sorted by their bytes |
//!
//! Arguments follow one another, as the fields of the tuple of all of them.
//!
//! # Maps are canonical; sets are not
//!
//! bincode writes a map's entries in the order the map gives them, which for
//! a `HashMap` changes from process to process (and from map to map): the key
//! of the same call would differ every time. Here each entry is encoded apart
//! and the entries are written sorted by their bytes, so equal maps give
//! equal keys everywhere. Where that order is not the map's own, keys differ
//! from bincode's: a `BTreeMap` whose keys' encodings sort otherwise than the
//! keys (strings of different lengths, since the length comes first; integers
//! of 251 and more, little endian; negative integers, zigzagged) has keys
//! other than those built before version 1. Maps whose order is already that
//! of the bytes (`BTreeMap<u8, _>`, unsigned keys below 251, signed ones from
//! 0 to 125, strings of one length) keep their keys.
//!
//! Sets reach a serializer as sequences, which nothing tells apart from a
//! `Vec` whose order means something: sorting sequences would give `[1, 2]`
//! and `[2, 1]` one key, and so one call the other's result. So a sequence
//! keeps its order, and a `HashSet` argument gives keys that vary with its
//! iteration order: such calls miss (they never read wrong data). Pass a
//! `BTreeSet` or a sorted `Vec`, or give the key with `#[cache(key = ...)]`.
//!
//! Sequences of unknown length (which bincode refuses) are buffered, then
//! written with their count; one that announces a length other than its
//! count is refused (its bytes would be ambiguous): the call runs uncached.

use std::fmt;

use serde::Serialize;
use serde::ser;
use smallvec::SmallVec;

/// The version of the argument encoding in cache keys, which this module
/// documents. Keys do not carry it: version 1 writes what bincode 2 wrote,
/// so keys built before it are unchanged. Any change to the bytes of an
/// argument raises it (and changes keys, so that entries are missed once,
/// never misread).
pub const KEY_ENCODING_VERSION: u32 = 1;

/// Where encoded bytes go: the L1 key of a call, a map's entry buffer, or
/// the writer that hashes long arguments.
pub(crate) trait Sink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

impl<const N: usize> Sink for SmallVec<[u8; N]> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        // One byte (a small integer, a length, a tag) is the common case:
        // `push` checks the room inline, where `extend_from_slice` calls
        // out to reserve first.
        match bytes {
            [byte] => self.push(*byte),
            bytes => self.extend_from_slice(bytes),
        }
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Why a value could not be encoded: its `Serialize` implementation failed
/// (the call then runs uncached), or gave a length other than its count.
#[derive(Debug)]
pub(crate) struct ArgsError(String);

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgsError {}

impl ser::Error for ArgsError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ArgsError(msg.to_string())
    }
}

/// Appends the key encoding of `value` to `sink`.
#[inline]
pub(crate) fn encode<T: Serialize + ?Sized, S: Sink>(
    value: &T,
    sink: &mut S,
) -> Result<(), ArgsError> {
    value.serialize(Encoder { sink })
}

/// The serializer: writes each value straight into its sink.
struct Encoder<'a, S> {
    sink: &'a mut S,
}

impl<S: Sink> Encoder<'_, S> {
    #[inline]
    fn varint(&mut self, n: u64) {
        if n < 251 {
            self.sink.put(&[n as u8]);
        } else if let Ok(n) = u16::try_from(n) {
            let [a, b] = n.to_le_bytes();
            self.sink.put(&[251, a, b]);
        } else if let Ok(n) = u32::try_from(n) {
            let [a, b, c, d] = n.to_le_bytes();
            self.sink.put(&[252, a, b, c, d]);
        } else {
            let mut out = [253; 9];
            out[1..].copy_from_slice(&n.to_le_bytes());
            self.sink.put(&out);
        }
    }

    fn varint128(&mut self, n: u128) {
        match u64::try_from(n) {
            Ok(n) => self.varint(n),
            Err(_) => {
                let mut out = [254; 17];
                out[1..].copy_from_slice(&n.to_le_bytes());
                self.sink.put(&out);
            }
        }
    }

    #[inline]
    fn len(&mut self, len: usize) {
        self.varint(len as u64);
    }

    #[inline]
    fn nested(&mut self) -> Encoder<'_, S> {
        Encoder { sink: self.sink }
    }
}

/// `v` zigzagged: `2v` for `v >= 0`, `-2v - 1` below.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn zigzag128(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

impl<'a, S: Sink> ser::Serializer for Encoder<'a, S> {
    type Ok = ();
    type Error = ArgsError;
    type SerializeSeq = Seq<'a, S>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Map<'a, S>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> Result<(), ArgsError> {
        self.sink.put(&[u8::from(v)]);
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), ArgsError> {
        self.sink.put(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_i16(self, v: i16) -> Result<(), ArgsError> {
        self.serialize_i64(v.into())
    }

    fn serialize_i32(self, v: i32) -> Result<(), ArgsError> {
        self.serialize_i64(v.into())
    }

    #[inline]
    fn serialize_i64(mut self, v: i64) -> Result<(), ArgsError> {
        self.varint(zigzag(v));
        Ok(())
    }

    fn serialize_i128(mut self, v: i128) -> Result<(), ArgsError> {
        self.varint128(zigzag128(v));
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), ArgsError> {
        self.sink.put(&[v]);
        Ok(())
    }

    fn serialize_u16(self, v: u16) -> Result<(), ArgsError> {
        self.serialize_u64(v.into())
    }

    fn serialize_u32(self, v: u32) -> Result<(), ArgsError> {
        self.serialize_u64(v.into())
    }

    #[inline]
    fn serialize_u64(mut self, v: u64) -> Result<(), ArgsError> {
        self.varint(v);
        Ok(())
    }

    fn serialize_u128(mut self, v: u128) -> Result<(), ArgsError> {
        self.varint128(v);
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), ArgsError> {
        self.sink.put(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<(), ArgsError> {
        self.sink.put(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), ArgsError> {
        self.sink.put(v.encode_utf8(&mut [0; 4]).as_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), ArgsError> {
        self.serialize_bytes(v.as_bytes())
    }

    #[inline]
    fn serialize_bytes(mut self, v: &[u8]) -> Result<(), ArgsError> {
        self.len(v.len());
        self.sink.put(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), ArgsError> {
        self.sink.put(&[0]);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), ArgsError> {
        self.sink.put(&[1]);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), ArgsError> {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), ArgsError> {
        Ok(())
    }

    fn serialize_unit_variant(
        mut self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
    ) -> Result<(), ArgsError> {
        self.varint(variant_index.into());
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), ArgsError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), ArgsError> {
        self.varint(variant_index.into());
        value.serialize(self)
    }

    fn serialize_seq(mut self, len: Option<usize>) -> Result<Seq<'a, S>, ArgsError> {
        let buffer = match len {
            Some(len) => {
                self.len(len);
                None
            }
            None => Some(Vec::new()),
        };
        Ok(Seq {
            sink: self.sink,
            declared: len,
            count: 0,
            buffer,
        })
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self, ArgsError> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, ArgsError> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        mut self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, ArgsError> {
        self.varint(variant_index.into());
        Ok(self)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Map<'a, S>, ArgsError> {
        Ok(Map {
            sink: self.sink,
            entries: Vec::new(),
            ends: Vec::new(),
        })
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, ArgsError> {
        Ok(self)
    }

    fn serialize_struct_variant(
        mut self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, ArgsError> {
        self.varint(variant_index.into());
        Ok(self)
    }

    /// As bincode: types that serialize differently for people (addresses,
    /// times) take their compact form.
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Tuples, tuple structs, structs and their variants: the fields in order.
macro_rules! fields_in_order {
    ($($trait:ident :: $method:ident ($($name:ident: $ty:ty),*);)*) => {$(
        impl<S: Sink> ser::$trait for Encoder<'_, S> {
            type Ok = ();
            type Error = ArgsError;

            #[inline]
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($name: $ty,)*
                value: &T,
            ) -> Result<(), ArgsError> {
                value.serialize(self.nested())
            }

            fn end(self) -> Result<(), ArgsError> {
                Ok(())
            }
        }
    )*};
}

fields_in_order! {
    SerializeTuple::serialize_element();
    SerializeTupleStruct::serialize_field();
    SerializeTupleVariant::serialize_field();
    SerializeStruct::serialize_field(_key: &'static str);
    SerializeStructVariant::serialize_field(_key: &'static str);
}

/// A sequence: its elements follow its count straight away, or, when its
/// length is not known ahead, go to a buffer written after the count at the end.
struct Seq<'a, S> {
    sink: &'a mut S,
    /// The length announced, written before the elements.
    declared: Option<usize>,
    /// The elements so far.
    count: usize,
    /// The elements of a sequence of unknown length.
    buffer: Option<Vec<u8>>,
}

impl<S: Sink> ser::SerializeSeq for Seq<'_, S> {
    type Ok = ();
    type Error = ArgsError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ArgsError> {
        self.count += 1;
        match &mut self.buffer {
            Some(buffer) => encode(value, buffer),
            None => encode(value, self.sink),
        }
    }

    fn end(self) -> Result<(), ArgsError> {
        match (self.declared, self.buffer) {
            (Some(declared), _) if declared != self.count => Err(ArgsError(format!(
                "a sequence announced {declared} elements and gave {}",
                self.count
            ))),
            (_, Some(buffer)) => {
                Encoder { sink: self.sink }.len(self.count);
                self.sink.put(&buffer);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A map: each entry encoded apart, then all written sorted by their bytes.
struct Map<'a, S> {
    sink: &'a mut S,
    /// The entries' bytes, one after the other: key, then value.
    entries: Vec<u8>,
    /// Where each complete entry ends in `entries`.
    ends: Vec<usize>,
}

impl<S: Sink> ser::SerializeMap for Map<'_, S> {
    type Ok = ();
    type Error = ArgsError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ArgsError> {
        encode(key, &mut self.entries)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ArgsError> {
        encode(value, &mut self.entries)?;
        self.ends.push(self.entries.len());
        Ok(())
    }

    fn end(self) -> Result<(), ArgsError> {
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(self.ends.len());
        let mut start = 0;
        for &end in &self.ends {
            spans.push((start, end));
            start = end;
        }
        if start != self.entries.len() {
            return Err(ArgsError("a map gave a key without a value".into()));
        }
        let entries = &self.entries;
        spans.sort_unstable_by(|a, b| entries[a.0..a.1].cmp(&entries[b.0..b.1]));
        Encoder { sink: self.sink }.len(spans.len());
        for (start, end) in spans {
            self.sink.put(&entries[start..end]);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
