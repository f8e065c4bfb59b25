//! A value of any serde data-model type, serialized as that type itself,
//! for the tests of the key encoding: the property tests against bincode
//! (`args_tests.rs`) and the fuzzing of the key builder (`fuzz_tests.rs`).

use serde::Serialize;
use serde::ser::{
    Error as _, SerializeMap, SerializeSeq, SerializeStruct, SerializeTuple, SerializeTupleVariant,
    Serializer,
};

/// A value of any serde data-model type.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Bool(bool),
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    U128(u128),
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    I128(i128),
    F32(f32),
    F64(f64),
    Char(char),
    Str(String),
    Bytes(Vec<u8>),
    None,
    Some(Box<Value>),
    Unit,
    UnitStruct,
    UnitVariant(u32),
    Newtype(Box<Value>),
    NewtypeVariant(u32, Box<Value>),
    Seq(Vec<Value>),
    /// A sequence that does not announce its length.
    Unannounced(Vec<Value>),
    Tuple(Vec<Value>),
    TupleVariant(u32, Vec<Value>),
    Struct(Vec<Value>),
    Map(Vec<(Value, Value)>),
    /// A sequence that announces one element more than it gives: refused.
    Lying(Vec<Value>),
    /// A `Serialize` implementation that fails: refused.
    Fails,
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Value::Bool(v) => s.serialize_bool(*v),
            Value::U8(v) => s.serialize_u8(*v),
            Value::U16(v) => s.serialize_u16(*v),
            Value::U32(v) => s.serialize_u32(*v),
            Value::U64(v) => s.serialize_u64(*v),
            Value::U128(v) => s.serialize_u128(*v),
            Value::I8(v) => s.serialize_i8(*v),
            Value::I16(v) => s.serialize_i16(*v),
            Value::I32(v) => s.serialize_i32(*v),
            Value::I64(v) => s.serialize_i64(*v),
            Value::I128(v) => s.serialize_i128(*v),
            Value::F32(v) => s.serialize_f32(*v),
            Value::F64(v) => s.serialize_f64(*v),
            Value::Char(v) => s.serialize_char(*v),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(v) => s.serialize_bytes(v),
            Value::None => s.serialize_none(),
            Value::Some(v) => s.serialize_some(v),
            Value::Unit => s.serialize_unit(),
            Value::UnitStruct => s.serialize_unit_struct("U"),
            Value::UnitVariant(i) => s.serialize_unit_variant("E", *i, "V"),
            Value::Newtype(v) => s.serialize_newtype_struct("N", v),
            Value::NewtypeVariant(i, v) => s.serialize_newtype_variant("E", *i, "V", v),
            Value::Seq(items) => s.collect_seq(items),
            Value::Unannounced(items) | Value::Lying(items) => {
                let announced = match self {
                    Value::Lying(_) => Some(items.len() + 1),
                    _ => None,
                };
                let mut seq = s.serialize_seq(announced)?;
                items.iter().try_for_each(|v| seq.serialize_element(v))?;
                seq.end()
            }
            Value::Tuple(items) => {
                let mut tuple = s.serialize_tuple(items.len())?;
                items.iter().try_for_each(|v| tuple.serialize_element(v))?;
                tuple.end()
            }
            Value::TupleVariant(i, items) => {
                let mut tuple = s.serialize_tuple_variant("E", *i, "V", items.len())?;
                items.iter().try_for_each(|v| tuple.serialize_field(v))?;
                tuple.end()
            }
            Value::Struct(fields) => {
                const NAMES: [&str; 4] = ["a", "b", "c", "d"];
                let mut st = s.serialize_struct("S", fields.len())?;
                for (name, v) in NAMES.iter().zip(fields) {
                    st.serialize_field(name, v)?;
                }
                st.end()
            }
            Value::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                entries
                    .iter()
                    .try_for_each(|(k, v)| map.serialize_entry(k, v))?;
                map.end()
            }
            Value::Fails => Err(S::Error::custom("this value has no key")),
        }
    }
}
