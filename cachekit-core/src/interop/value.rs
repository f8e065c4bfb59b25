//! The interop data model: the values both SDKs hash and store.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::datetime;

/// The newtype name under which an [`InteropValue::Set`] serializes, so that
/// [`InteropValue::from_serde`] gets a set back (other serializers see a sequence).
pub(crate) const SET_NAME: &str = "__cachekit_interop_set";
/// The newtype name of an [`InteropValue::DateTime`] (an `i64` of microseconds).
pub(crate) const DATETIME_NAME: &str = "__cachekit_interop_datetime";
/// The newtype name of an [`InteropValue::Uuid`] (16 bytes).
pub(crate) const UUID_NAME: &str = "__cachekit_interop_uuid";

/// Smallest integer interop values hold (`-2^63`).
pub(crate) const INT_MIN: i128 = i64::MIN as i128;
/// Largest integer interop values hold (`2^64 - 1`).
pub(crate) const INT_MAX: i128 = u64::MAX as i128;

/// A value of the interop data model, shared with cachekit-py: what an
/// argument of an interop call or an interop cache value is made of.
#[derive(Debug, Clone, PartialEq)]
pub enum InteropValue {
    /// Python's `None`: MessagePack nil.
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer in `[-2^63, 2^64 - 1]` (checked when written).
    Int(i128),
    /// A finite float (NaN and infinities are refused when written).
    Float(f64),
    /// A string.
    Str(String),
    /// Python `bytes`: MessagePack bin.
    Bytes(Vec<u8>),
    /// A list or tuple.
    Array(Vec<InteropValue>),
    /// A dict with string keys, kept sorted by their UTF-8 bytes.
    Map(BTreeMap<String, InteropValue>),
    /// A set: an array of its elements sorted by their encoded bytes,
    /// deduplicated. Only as an argument: values cannot hold sets.
    Set(Vec<InteropValue>),
    /// A UTC instant: float seconds as an argument, an ISO sentinel map as a value.
    DateTime {
        /// Microseconds since the Unix epoch (negative before it).
        unix_micros: i64,
    },
    /// A UUID: its lowercase hyphenated text.
    Uuid([u8; 16]),
}

impl InteropValue {
    /// An integer value, or the error for one outside `[-2^63, 2^64 - 1]`.
    pub(crate) fn int(n: i128) -> Result<Self, super::InteropError> {
        if (INT_MIN..=INT_MAX).contains(&n) {
            Ok(InteropValue::Int(n))
        } else {
            Err(super::InteropError::new(format!(
                "the integer {n} is outside [-2^63, 2^64-1], the range MessagePack and \
                 cachekit-py accept; pass it as a string"
            )))
        }
    }

    /// [`InteropValue::int`] of an unsigned 128-bit integer.
    pub(crate) fn uint(n: u128) -> Result<Self, super::InteropError> {
        match i128::try_from(n) {
            Ok(n) => InteropValue::int(n),
            Err(_) => Err(super::InteropError::new(format!(
                "the integer {n} is outside [-2^63, 2^64-1], the range MessagePack and \
                 cachekit-py accept; pass it as a string"
            ))),
        }
    }

    /// A float value, or the error for NaN and infinities.
    pub(crate) fn float(f: f64) -> Result<Self, super::InteropError> {
        if f.is_finite() {
            Ok(InteropValue::Float(f))
        } else {
            Err(super::InteropError::new(format!(
                "the float {f} is not finite: cachekit-py refuses NaN and infinities; \
                 pass None or a string instead"
            )))
        }
    }
}

/// Bytes serialized with `serialize_bytes` (MessagePack bin).
struct Bin<'a>(&'a [u8]);

impl Serialize for Bin<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Serializes as the serde data model does the same shapes; sets, datetimes
/// and UUIDs as newtypes of private names, which
/// [`InteropValue::from_serde`] turns back into themselves.
impl Serialize for InteropValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            InteropValue::Nil => serializer.serialize_unit(),
            InteropValue::Bool(b) => serializer.serialize_bool(*b),
            InteropValue::Int(n) => match i64::try_from(*n) {
                Ok(n) => serializer.serialize_i64(n),
                Err(_) => match u64::try_from(*n) {
                    Ok(n) => serializer.serialize_u64(n),
                    Err(_) => serializer.serialize_i128(*n),
                },
            },
            InteropValue::Float(f) => serializer.serialize_f64(*f),
            InteropValue::Str(s) => serializer.serialize_str(s),
            InteropValue::Bytes(b) => serializer.serialize_bytes(b),
            InteropValue::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            InteropValue::Map(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    out.serialize_entry(k, v)?;
                }
                out.end()
            }
            InteropValue::Set(items) => serializer.serialize_newtype_struct(SET_NAME, items),
            InteropValue::DateTime { unix_micros } => {
                serializer.serialize_newtype_struct(DATETIME_NAME, unix_micros)
            }
            InteropValue::Uuid(bytes) => {
                serializer.serialize_newtype_struct(UUID_NAME, &Bin(bytes))
            }
        }
    }
}

/// Reads any self-describing value. Extension types read as their
/// `[type, bytes]` pair; a datetime sentinel map
/// (`{"__datetime__": true, "value": "<isoformat>"}`) as a
/// [`InteropValue::DateTime`], as cachekit-py revives it. Maps must have
/// string keys: decode into a typed map to read other keys.
impl<'de> Deserialize<'de> for InteropValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = InteropValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an interop value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<InteropValue, E> {
        Ok(InteropValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<InteropValue, E> {
        Ok(InteropValue::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<InteropValue, E> {
        Ok(InteropValue::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<InteropValue, E> {
        InteropValue::int(v).map_err(E::custom)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<InteropValue, E> {
        InteropValue::uint(v).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<InteropValue, E> {
        Ok(InteropValue::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<InteropValue, E> {
        Ok(InteropValue::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<InteropValue, E> {
        Ok(InteropValue::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<InteropValue, E> {
        Ok(InteropValue::Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<InteropValue, E> {
        Ok(InteropValue::Bytes(v))
    }

    fn visit_none<E: de::Error>(self) -> Result<InteropValue, E> {
        Ok(InteropValue::Nil)
    }

    fn visit_unit<E: de::Error>(self) -> Result<InteropValue, E> {
        Ok(InteropValue::Nil)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<InteropValue, D::Error> {
        InteropValue::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<InteropValue, D::Error> {
        InteropValue::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<InteropValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(InteropValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<InteropValue, A::Error> {
        let mut map = BTreeMap::new();
        while let Some(Key(key)) = access.next_key()? {
            let value = access.next_value()?;
            map.insert(key, value);
        }
        Ok(revive(map))
    }
}

/// The datetime a sentinel map stands for, or the map itself.
fn revive(map: BTreeMap<String, InteropValue>) -> InteropValue {
    if map.len() == 2 && map.get(datetime::MARKER) == Some(&InteropValue::Bool(true)) {
        if let Some(InteropValue::Str(text)) = map.get(datetime::VALUE) {
            if let Ok(unix_micros) = datetime::parse_iso(text) {
                return InteropValue::DateTime { unix_micros };
            }
        }
    }
    InteropValue::Map(map)
}

/// A map key of an [`InteropValue::Map`]: a string only.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a string map key (an InteropValue map has string keys only; \
             decode into a typed map to read other keys)",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
        Ok(Key(v))
    }
}
