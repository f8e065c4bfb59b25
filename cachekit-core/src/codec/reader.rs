//! A bounded reader of bincode's standard format (varint integers, little
//! endian), as a serde `Deserializer`.
//!
//! Written here rather than taken from bincode 2, whose decoder trusts the
//! bytes: it allocates a string's or byte string's declared length before
//! reading it (a length of 2^40 under a valid checksum aborts the process,
//! `u64::MAX` panics with "capacity overflow"), and it recurses as deep as
//! the bytes nest (200,000 levels overflow the stack). No configuration of
//! bincode bounds both: its byte limit is a compile-time constant, not the
//! entry's length, and it has no depth limit. This reader trusts no length:
//!
//! - strings and byte strings are borrowed from the input, so their declared
//!   length must fit in what remains of it;
//! - the elements declared by all sequences and maps together may not
//!   outnumber the payload's bytes (every element of a type that is not
//!   zero-sized takes at least one byte, so only collections of zero-sized
//!   values could, and those are not stored: see [`super::encode`]);
//! - no collection's declared length is passed on as a size hint, so the
//!   requested type allocates for the elements actually read, not for the
//!   ones declared (a hint of 1,000 elements of 1 KiB at each of 100 levels
//!   would reserve 100 MB for a payload of a few hundred bytes);
//! - compound values nest at most [`MAX_DEPTH`](super::shape::MAX_DEPTH) deep.
//!
//! So what a payload allocates grows with what it holds, never with what its
//! bytes claim, and no input panics. While it reads, it feeds the requested
//! type's serde calls into a [`Shape`], to compare with the writer's, and it
//! stops at the first of the writer's marks that differs: a payload of
//! another type is not read to its end as this one.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::invalid::Invalid;
use super::shape::{Marks, Shape, Tag};

type Read<T> = Result<T, Invalid>;

/// Reads one value from a payload body.
pub(super) struct Reader<'de> {
    input: &'de [u8],
    /// Collection elements that may still be declared.
    elements_left: u64,
    pub(super) shape: Shape<'de>,
}

/// The message for a payload whose shape differs from the requested type's.
pub(super) const OTHER_TYPE: &str = "the entry was written by another type (its shape differs from the requested type's; \
     a type with `#[serde(alias)]` names always reads so)";

impl<'de> Reader<'de> {
    /// A reader of `input`, checking the writer's `marks` (see [`Shape`]).
    pub(super) fn new(input: &'de [u8], marks: &'de [u8]) -> Self {
        Reader {
            input,
            elements_left: input.len() as u64,
            shape: Shape::new(Marks::Check {
                expected: marks,
                differed: false,
            }),
        }
    }

    /// Stops at an element once the shape differs from the writer's.
    #[inline]
    fn check_shape(&self) -> Read<()> {
        if self.shape.differs() {
            return Err(Invalid(OTHER_TYPE.into()));
        }
        Ok(())
    }

    /// Bytes not read yet.
    pub(super) fn remaining(&self) -> usize {
        self.input.len()
    }

    #[inline]
    fn take(&mut self, n: usize) -> Read<&'de [u8]> {
        if n > self.input.len() {
            return Err(past_the_end(n, self.input.len()));
        }
        let (taken, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(taken)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Read<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    #[inline]
    fn byte(&mut self) -> Read<u8> {
        match self.input.split_first() {
            Some((&byte, rest)) => {
                self.input = rest;
                Ok(byte)
            }
            None => Err(past_the_end(1, 0)),
        }
    }

    /// A varint of at most `max_bytes` (2, 4 or 8) bytes after its marker.
    #[inline]
    fn varint(&mut self, max_bytes: usize) -> Read<u64> {
        let marker = self.byte()?;
        let bytes = match marker {
            0..=250 => return Ok(marker.into()),
            251 => 2,
            252 => 4,
            253 => 8,
            _ => 16,
        };
        if marker == 255 || bytes > max_bytes {
            return Err(wide_integer(marker, max_bytes));
        }
        Ok(match bytes {
            2 => u64::from(u16::from_le_bytes(self.array()?)),
            4 => u64::from(u32::from_le_bytes(self.array()?)),
            _ => u64::from_le_bytes(self.array()?),
        })
    }

    /// A varint of up to 16 bytes after its marker (`u128`, `i128`).
    fn varint128(&mut self) -> Read<u128> {
        if self.input.first() == Some(&254) {
            self.byte()?;
            return Ok(u128::from_le_bytes(self.array()?));
        }
        self.varint(8).map(u128::from)
    }

    fn unsigned(&mut self, tag: Tag, max_bytes: usize) -> Read<u64> {
        self.shape.tag(tag, 0);
        self.varint(max_bytes)
    }

    /// Undoes bincode's zigzag: 0, -1, 1, -2, ... from 0, 1, 2, 3, ...
    fn signed(&mut self, tag: Tag, max_bytes: usize) -> Read<i64> {
        let zigzag = self.unsigned(tag, max_bytes)?;
        Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
    }

    /// A length prefix (a varint `u64`).
    #[inline]
    fn len(&mut self) -> Read<usize> {
        usize::try_from(self.varint(8)?).map_err(|_| Invalid("a length beyond usize".into()))
    }

    /// The length of a sequence or map, within the elements the payload can hold.
    fn elements(&mut self) -> Read<usize> {
        let len = self.len()?;
        self.elements_left = self.elements_left.checked_sub(len as u64).ok_or_else(|| {
            Invalid(format!(
                "a collection of {len} elements in a payload that cannot hold them"
            ))
        })?;
        Ok(len)
    }

    #[inline]
    fn str(&mut self) -> Read<&'de str> {
        let len = self.len()?;
        std::str::from_utf8(self.take(len)?).map_err(|e| Invalid(format!("bad UTF-8: {e}")))
    }

    /// Runs `read` one level deeper.
    fn nested<T>(&mut self, read: impl FnOnce(&mut Self) -> Read<T>) -> Read<T> {
        self.shape.enter()?;
        let value = read(self)?;
        self.shape.leave();
        Ok(value)
    }
}

/// A read past the end of the payload.
#[cold]
fn past_the_end(wanted: usize, remaining: usize) -> Invalid {
    Invalid(format!("{wanted} bytes declared where {remaining} remain"))
}

/// An integer marker the requested width does not allow (255: none does).
#[cold]
fn wide_integer(marker: u8, max_bytes: usize) -> Invalid {
    Invalid(format!(
        "integer marker {marker} where at most {max_bytes} bytes fit"
    ))
}

/// Elements of a sequence, tuple or struct, in order; `fields` names a struct's.
struct Elements<'a, 'de> {
    reader: &'a mut Reader<'de>,
    left: usize,
    fields: &'static [&'static str],
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Invalid;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Read<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.reader.check_shape()?;
        let field = self.fields.len().checked_sub(self.left);
        if let Some(field) = field.and_then(|index| self.fields.get(index)) {
            self.reader.shape.tag(Tag::Field, 0);
            self.reader.shape.name(field);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = Invalid;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Read<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.reader.check_shape()?;
        self.left -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Read<V::Value> {
        seed.deserialize(&mut *self.reader)
    }
}

/// An enum's variant, read by index.
struct Variant<'a, 'de> {
    reader: &'a mut Reader<'de>,
    variants: &'static [&'static str],
    index: u32,
}

impl<'de> de::EnumAccess<'de> for Variant<'_, 'de> {
    type Error = Invalid;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(mut self, seed: V) -> Read<(V::Value, Self)> {
        self.index = u32::try_from(self.reader.varint(4)?).expect("at most 4 bytes");
        let index: de::value::U32Deserializer<Invalid> = self.index.into_deserializer();
        let chosen = seed.deserialize(index)?;
        Ok((chosen, self))
    }
}

impl<'de> Variant<'_, 'de> {
    /// Records the variant, by index and name.
    fn record(&mut self, tag: Tag) {
        let name = self.variants.get(self.index as usize).copied();
        self.reader.shape.tag(tag, self.index.into());
        // An index without a name was refused by the variant's own seed.
        self.reader.shape.name(name.unwrap_or_default());
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Invalid;

    fn unit_variant(mut self) -> Read<()> {
        self.record(Tag::UnitVariant);
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(mut self, seed: T) -> Read<T::Value> {
        self.record(Tag::NewtypeVariant);
        self.reader.nested(|reader| seed.deserialize(reader))
    }

    fn tuple_variant<V: Visitor<'de>>(mut self, len: usize, visitor: V) -> Read<V::Value> {
        self.record(Tag::TupleVariant);
        self.reader.shape.tag(Tag::Tuple, len as u64);
        self.reader.nested(|reader| {
            visitor.visit_seq(Elements {
                reader,
                left: len,
                fields: &[],
            })
        })
    }

    fn struct_variant<V: Visitor<'de>>(
        mut self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Read<V::Value> {
        self.record(Tag::StructVariant);
        self.reader.shape.tag(Tag::Struct, fields.len() as u64);
        self.reader.nested(|reader| {
            visitor.visit_seq(Elements {
                reader,
                left: fields.len(),
                fields,
            })
        })
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Invalid;

    fn is_human_readable(&self) -> bool {
        // As bincode: types read their compact form.
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Read<V::Value> {
        Err(Invalid(
            "the requested type needs a self-describing format (deserialize_any)".into(),
        ))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::Bool, 0);
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            other => Err(Invalid(format!("invalid bool {other}"))),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::I8, 0);
        visitor.visit_i8(self.byte()? as i8)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        visitor.visit_i16(self.signed(Tag::I16, 2)? as i16)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        visitor.visit_i32(self.signed(Tag::I32, 4)? as i32)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        visitor.visit_i64(self.signed(Tag::I64, 8)?)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::I128, 0);
        let zigzag = self.varint128()?;
        visitor.visit_i128((zigzag >> 1) as i128 ^ -((zigzag & 1) as i128))
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::U8, 0);
        visitor.visit_u8(self.byte()?)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        visitor.visit_u16(self.unsigned(Tag::U16, 2)? as u16)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        visitor.visit_u32(self.unsigned(Tag::U32, 4)? as u32)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        visitor.visit_u64(self.unsigned(Tag::U64, 8)?)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::U128, 0);
        visitor.visit_u128(self.varint128()?)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::F32, 0);
        visitor.visit_f32(f32::from_le_bytes(self.array()?))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::F64, 0);
        visitor.visit_f64(f64::from_le_bytes(self.array()?))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::Char, 0);
        // UTF-8, one to four bytes, as bincode writes a char.
        let first = *self
            .input
            .first()
            .ok_or_else(|| Invalid("a char past the end".into()))?;
        let width = match first {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return Err(Invalid(format!("invalid char start byte {first:#x}"))),
        };
        let bytes = self.take(width)?;
        let c = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.chars().next())
            .ok_or_else(|| Invalid("invalid char".into()))?;
        visitor.visit_char(c)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::Str, 0);
        visitor.visit_borrowed_str(self.str()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        // Owned, as bincode gives it: a visitor may take only `visit_string`.
        self.shape.tag(Tag::Str, 0);
        visitor.visit_string(self.str()?.to_owned())
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::Bytes, 0);
        let len = self.len()?;
        visitor.visit_borrowed_bytes(self.take(len)?)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::Bytes, 0);
        let len = self.len()?;
        visitor.visit_byte_buf(self.take(len)?.to_vec())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        match self.byte()? {
            0 => {
                self.shape.tag(Tag::None, 0);
                visitor.visit_none()
            }
            1 => {
                self.shape.tag(Tag::Some, 0);
                self.nested(|reader| visitor.visit_some(reader))
            }
            other => Err(Invalid(format!("invalid option tag {other}"))),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::Unit, 0);
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Read<V::Value> {
        self.shape.tag(Tag::UnitStruct, 0);
        self.shape.name(name);
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Read<V::Value> {
        self.shape.tag(Tag::NewtypeStruct, 0);
        self.nested(|reader| {
            reader.shape.name(name);
            visitor.visit_newtype_struct(reader)
        })
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        let len = self.elements()?;
        self.shape.tag(Tag::Seq, 0);
        self.nested(|reader| {
            visitor.visit_seq(Elements {
                reader,
                left: len,
                fields: &[],
            })
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Read<V::Value> {
        self.shape.tag(Tag::Tuple, len as u64);
        self.nested(|reader| {
            visitor.visit_seq(Elements {
                reader,
                left: len,
                fields: &[],
            })
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Read<V::Value> {
        self.shape.tag(Tag::TupleStruct, len as u64);
        self.nested(|reader| {
            reader.shape.name(name);
            visitor.visit_seq(Elements {
                reader,
                left: len,
                fields: &[],
            })
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Read<V::Value> {
        let len = self.elements()?;
        self.shape.tag(Tag::Map, 0);
        self.nested(|reader| {
            visitor.visit_map(Elements {
                reader,
                left: len,
                fields: &[],
            })
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Read<V::Value> {
        self.shape.tag(Tag::Struct, fields.len() as u64);
        self.nested(|reader| {
            reader.shape.name(name);
            visitor.visit_seq(Elements {
                reader,
                left: fields.len(),
                fields,
            })
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Read<V::Value> {
        self.shape.tag(Tag::Enum, 0);
        self.shape.name(name);
        visitor.visit_enum(Variant {
            reader: self,
            variants,
            index: 0,
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Read<V::Value> {
        Err(Invalid(
            "the requested type reads identifiers, which bincode does not write".into(),
        ))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Read<V::Value> {
        Err(Invalid(
            "the requested type skips values, which bincode cannot".into(),
        ))
    }
}
