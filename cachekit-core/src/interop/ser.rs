//! [`InteropValue::from_serde`]: any `Serialize` value as an interop value.
//!
//! Structs and maps become maps (string keys only), sequences and tuples
//! arrays, `serialize_bytes` bin, unit and `None` nil, a newtype its inner
//! value, a unit variant its name. Enum variants with data, non-string map
//! keys and non-finite floats are errors: Python has no such values.

use std::collections::BTreeMap;

use serde::ser::{self, Impossible, Serialize};

use super::value::{DATETIME_NAME, SET_NAME, UUID_NAME};
use super::{InteropError, InteropValue};

impl InteropValue {
    /// The interop value of any `Serialize` value, or the error naming what
    /// interop values cannot hold.
    pub fn from_serde<T: Serialize + ?Sized>(value: &T) -> Result<Self, InteropError> {
        value.serialize(ValueSerializer)
    }
}

/// Builds an [`InteropValue`] out of the serde data model.
struct ValueSerializer;

fn variant_error(name: &str, variant: &str) -> InteropError {
    InteropError::new(format!(
        "the variant `{name}::{variant}` carries data, which interop values cannot hold \
         (only unit variants become their name); use a struct or a map instead"
    ))
}

impl ser::Serializer for ValueSerializer {
    type Ok = InteropValue;
    type Error = InteropError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = Impossible<InteropValue, InteropError>;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = Impossible<InteropValue, InteropError>;

    fn serialize_bool(self, v: bool) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Int(v.into()))
    }
    fn serialize_i128(self, v: i128) -> Result<InteropValue, InteropError> {
        InteropValue::int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Int(v.into()))
    }
    fn serialize_u128(self, v: u128) -> Result<InteropValue, InteropError> {
        InteropValue::uint(v)
    }
    fn serialize_f32(self, v: f32) -> Result<InteropValue, InteropError> {
        InteropValue::float(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<InteropValue, InteropError> {
        InteropValue::float(v)
    }
    fn serialize_char(self, v: char) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Nil)
    }
    fn serialize_some<T: Serialize + ?Sized>(
        self,
        value: &T,
    ) -> Result<InteropValue, InteropError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Nil)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Nil)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Str(variant.to_owned()))
    }

    /// A newtype is its inner value, except the private names under which
    /// `InteropValue`'s own sets, datetimes and UUIDs serialize.
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<InteropValue, InteropError> {
        let inner = value.serialize(self)?;
        match (name, inner) {
            (SET_NAME, InteropValue::Array(items)) => Ok(InteropValue::Set(items)),
            (DATETIME_NAME, InteropValue::Int(n)) => i64::try_from(n)
                .map(|unix_micros| InteropValue::DateTime { unix_micros })
                .map_err(|_| InteropError::new("a datetime's microseconds do not fit in i64")),
            // A field marked `with = "interop::datetime"`: its sentinel map.
            (DATETIME_NAME, InteropValue::Map(map)) => match map.get(super::datetime::VALUE) {
                Some(InteropValue::Str(text)) => super::datetime::parse_iso(text)
                    .map(|unix_micros| InteropValue::DateTime { unix_micros }),
                _ => Err(InteropError::new(
                    "a datetime sentinel map without its text",
                )),
            },
            (UUID_NAME, InteropValue::Bytes(bytes)) => <[u8; 16]>::try_from(bytes)
                .map(InteropValue::Uuid)
                .map_err(|_| InteropError::new("a UUID has 16 bytes")),
            (_, inner) => Ok(inner),
        }
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _value: &T,
    ) -> Result<InteropValue, InteropError> {
        Err(variant_error(name, variant))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, InteropError> {
        Ok(SeqBuilder(Vec::with_capacity(len.unwrap_or(0).min(4096))))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, InteropError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, InteropError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, InteropError> {
        Err(variant_error(name, variant))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<MapBuilder, InteropError> {
        Ok(MapBuilder::default())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<MapBuilder, InteropError> {
        Ok(MapBuilder::default())
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, InteropError> {
        Err(variant_error(name, variant))
    }
}

/// The elements of a sequence or tuple, in order.
struct SeqBuilder(Vec<InteropValue>);

impl ser::SerializeSeq for SeqBuilder {
    type Ok = InteropValue;
    type Error = InteropError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), InteropError> {
        self.0.push(value.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Array(self.0))
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = InteropValue;
    type Error = InteropError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), InteropError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<InteropValue, InteropError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = InteropValue;
    type Error = InteropError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), InteropError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<InteropValue, InteropError> {
        ser::SerializeSeq::end(self)
    }
}

/// The entries of a map or struct; a key waits here for its value.
#[derive(Default)]
struct MapBuilder {
    map: BTreeMap<String, InteropValue>,
    key: Option<String>,
}

impl MapBuilder {
    fn insert(&mut self, key: String, value: InteropValue) -> Result<(), InteropError> {
        if self.map.contains_key(&key) {
            return Err(InteropError::new(format!(
                "the map key {key:?} appears twice; interop maps have each key once"
            )));
        }
        self.map.insert(key, value);
        Ok(())
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = InteropValue;
    type Error = InteropError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), InteropError> {
        self.key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), InteropError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| InteropError::new("a map value came without its key"))?;
        let value = value.serialize(ValueSerializer)?;
        self.insert(key, value)
    }
    fn end(self) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Map(self.map))
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = InteropValue;
    type Error = InteropError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), InteropError> {
        let value = value.serialize(ValueSerializer)?;
        self.insert(key.to_owned(), value)
    }
    fn end(self) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Map(self.map))
    }
}

/// Takes a map key: a string (or a char, or a unit variant's name) only.
struct KeySerializer;

fn key_error(what: &str) -> InteropError {
    InteropError::new(format!(
        "a map key is {what}: interop maps have string keys only (Python dicts with str \
         keys); convert the keys to strings"
    ))
}

macro_rules! refuse_keys {
    ($($method:ident($ty:ty) $what:literal;)*) => {
        $(fn $method(self, _v: $ty) -> Result<String, InteropError> {
            Err(key_error($what))
        })*
    };
}

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = InteropError;
    type SerializeSeq = Impossible<String, InteropError>;
    type SerializeTuple = Impossible<String, InteropError>;
    type SerializeTupleStruct = Impossible<String, InteropError>;
    type SerializeTupleVariant = Impossible<String, InteropError>;
    type SerializeMap = Impossible<String, InteropError>;
    type SerializeStruct = Impossible<String, InteropError>;
    type SerializeStructVariant = Impossible<String, InteropError>;

    refuse_keys! {
        serialize_bool(bool) "a bool";
        serialize_i8(i8) "an integer";
        serialize_i16(i16) "an integer";
        serialize_i32(i32) "an integer";
        serialize_i64(i64) "an integer";
        serialize_i128(i128) "an integer";
        serialize_u8(u8) "an integer";
        serialize_u16(u16) "an integer";
        serialize_u32(u32) "an integer";
        serialize_u64(u64) "an integer";
        serialize_u128(u128) "an integer";
        serialize_f32(f32) "a float";
        serialize_f64(f64) "a float";
        serialize_bytes(&[u8]) "bytes";
    }

    fn serialize_char(self, v: char) -> Result<String, InteropError> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, InteropError> {
        Ok(v.to_owned())
    }
    fn serialize_none(self) -> Result<String, InteropError> {
        Err(key_error("None"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _v: &T) -> Result<String, InteropError> {
        Err(key_error("an Option"))
    }
    fn serialize_unit(self) -> Result<String, InteropError> {
        Err(key_error("a unit"))
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, InteropError> {
        Err(key_error("a unit struct"))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, InteropError> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, InteropError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, InteropError> {
        Err(key_error("an enum variant with data"))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, InteropError> {
        Err(key_error("a sequence"))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, InteropError> {
        Err(key_error("a tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, InteropError> {
        Err(key_error("a tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, InteropError> {
        Err(key_error("an enum variant with data"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, InteropError> {
        Err(key_error("a map"))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, InteropError> {
        Err(key_error("a struct"))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, InteropError> {
        Err(key_error("an enum variant with data"))
    }
}
