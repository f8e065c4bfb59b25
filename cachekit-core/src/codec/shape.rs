//! The shape fingerprint of a stored value: a hash of the serde data-model
//! calls that describe it (which primitive, which struct with which fields
//! in which order, which enum variant by index and name), without the
//! primitive values themselves.
//!
//! The writer hashes the calls its value's `Serialize` makes ([`shape_of`]);
//! the reader hashes the calls the requested type's `Deserialize` makes while
//! it decodes (the [`reader`](super::reader) feeds the same [`Shape`]). The
//! two agree exactly when the reader asks for what the writer wrote, so an
//! entry written by another type (a deploy that changed a return type, a
//! struct whose fields were reordered or renamed, an enum whose variants
//! moved) is detected rather than decoded into wrong data. It follows the
//! value, not the whole type: an enum that gained a variant still reads the
//! entries written before, whose variants are unchanged.
//!
//! The writer also records the fingerprint so far at marks along the way
//! (after 8, 16, 32, ... hashed words), so that a reader of another type
//! stops at the first mark after the shapes part, rather than decoding (and
//! allocating) the rest of the entry as its own type first.
//!
//! The same walk bounds what is stored: values nested deeper than
//! [`MAX_DEPTH`] are refused, so that nothing is stored that the bounded
//! reader would refuse to read back.
//!
//! One limit: serde's derived `Deserialize` lists a field's or variant's
//! aliases (`#[serde(alias = "...")]`) among the names, and the reader takes
//! the names by position, so an aliased type never matches its own writer:
//! its values are read as a miss, never as wrong data.

use serde::ser::{self, Serialize};

use super::invalid::Invalid;

/// Deepest nesting of compound values (options, structs, tuples, sequences,
/// maps, enum variants) that is stored or read. A bound, so that a crafted
/// entry cannot overflow the reader's stack (each level is a few frames of
/// the value's `Deserialize`); 128 as in `serde_json`, which leaves room on
/// a 2 MiB thread stack in a debug build.
pub const MAX_DEPTH: u32 = 128;

/// One serde data-model call, as hashed.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub(super) enum Tag {
    Bool = 1,
    I8,
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
    U64,
    U128,
    F32,
    F64,
    Char,
    Str,
    Bytes,
    None,
    Some,
    Unit,
    UnitStruct,
    NewtypeStruct,
    Seq,
    Tuple,
    TupleStruct,
    Map,
    Struct,
    Field,
    Enum,
    UnitVariant,
    NewtypeVariant,
    TupleVariant,
    StructVariant,
}

/// The running fingerprint of one value, its current nesting depth, and how
/// many collection elements it declared.
#[derive(Debug, Clone)]
pub(super) struct Shape<'a> {
    hash: u64,
    depth: u32,
    /// Elements of every sequence and map, summed.
    pub(super) elements: u64,
    /// Words hashed so far.
    words: u64,
    /// The word count of the next mark.
    next_mark: u64,
    marks: Marks<'a>,
}

/// The fingerprints at the marks: recorded by a writer, checked by a reader.
#[derive(Debug, Clone)]
pub(super) enum Marks<'a> {
    /// A writer's, in order.
    Record(Vec<u32>),
    /// A reader's: the writer's marks (four bytes each, little endian) not
    /// reached yet, and whether one differed.
    Check { expected: &'a [u8], differed: bool },
}

/// One step of the hash: order matters, and every step is a bijection of
/// the state for a given word.
#[inline]
fn mix(state: u64, word: u64) -> u64 {
    (state.rotate_left(23) ^ word).wrapping_mul(K)
}

/// The word count of the first mark; each next one is twice the last.
const FIRST_MARK: u64 = 8;

/// Most marks a payload may carry (enough for 2^64 words).
pub(super) const MAX_MARKS: usize = 61;

/// Odd constant of the multiply-rotate mix (the 64-bit golden ratio).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl<'a> Shape<'a> {
    /// A shape that records marks (a writer's) or checks them (a reader's).
    pub(super) fn new(marks: Marks<'a>) -> Self {
        Shape {
            hash: 0,
            depth: 0,
            elements: 0,
            words: 0,
            next_mark: FIRST_MARK,
            marks,
        }
    }

    /// The marks recorded (a writer's).
    pub(super) fn recorded(&self) -> &[u32] {
        match &self.marks {
            Marks::Record(marks) => marks,
            Marks::Check { .. } => &[],
        }
    }

    /// Whether the shape so far differs from the writer's (a reader's): a
    /// mark differed, or the writer had fewer.
    #[inline]
    pub(super) fn differs(&self) -> bool {
        matches!(self.marks, Marks::Check { differed: true, .. })
    }

    /// Whether a reader reached every mark the writer recorded.
    pub(super) fn all_marks_reached(&self) -> bool {
        match self.marks {
            Marks::Check { expected, differed } => !differed && expected.is_empty(),
            Marks::Record(_) => true,
        }
    }

    /// The fingerprint of the calls so far.
    pub(super) fn finish(&self) -> u64 {
        // murmur3's final mix, so that every input bit moves every output bit.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    #[inline]
    fn word(&mut self, word: u64) {
        self.hash = mix(self.hash, word);
        self.words += 1;
        if self.words == self.next_mark {
            self.next_mark = self.next_mark.saturating_mul(2);
            self.mark();
        }
    }

    /// Records or checks the fingerprint at a mark.
    #[cold]
    fn mark(&mut self) {
        let here = self.finish() as u32;
        match &mut self.marks {
            Marks::Record(marks) => marks.push(here),
            Marks::Check { expected, differed } => match expected.split_first_chunk::<4>() {
                Some((mark, rest)) if u32::from_le_bytes(*mark) == here => *expected = rest,
                _ => *differed = true,
            },
        }
    }

    /// Records a call; `n` is a length or an index that belongs to it.
    #[inline]
    pub(super) fn tag(&mut self, tag: Tag, n: u64) {
        self.word(tag as u64 | (n << 8));
    }

    /// Records a name (of a struct, field, enum or variant), by content
    /// (fingerprints are compared across processes and builds), as one word.
    #[inline]
    pub(super) fn name(&mut self, name: &str) {
        let mut folded = name.len() as u64;
        let mut chunks = name.as_bytes().chunks_exact(8);
        for chunk in &mut chunks {
            folded = mix(
                folded,
                u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
            );
        }
        let mut tail = [0; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(mix(folded, u64::from_le_bytes(tail)));
    }

    /// Enters a compound value; an error past [`MAX_DEPTH`].
    #[inline]
    pub(super) fn enter(&mut self) -> Result<(), TooDeep> {
        if self.depth >= MAX_DEPTH {
            return Err(TooDeep);
        }
        self.depth += 1;
        Ok(())
    }

    /// Leaves the compound value entered last.
    #[inline]
    pub(super) fn leave(&mut self) {
        self.depth -= 1;
    }
}

/// A value nested deeper than [`MAX_DEPTH`].
#[derive(Debug)]
pub(super) struct TooDeep;

impl From<TooDeep> for Invalid {
    fn from(_: TooDeep) -> Self {
        Invalid(format!(
            "the value is nested deeper than {MAX_DEPTH} levels"
        ))
    }
}

/// The shape of `value` as its `Serialize` describes it.
pub(super) fn shape_of<T: Serialize + ?Sized>(value: &T) -> Result<Shape<'static>, Invalid> {
    let mut shape = Shape::new(Marks::Record(Vec::new()));
    value.serialize(&mut shape)?;
    Ok(shape)
}

type Walk = Result<(), Invalid>;

impl Shape<'_> {
    /// Enters a compound value for the serializer: recorded, and counted in depth.
    fn open(&mut self, tag: Tag, n: u64) -> Result<&mut Self, Invalid> {
        self.tag(tag, n);
        self.enter()?;
        Ok(self)
    }

    /// Serializes `value` one level down.
    fn nested<T: Serialize + ?Sized>(&mut self, tag: Tag, n: u64, value: &T) -> Walk {
        self.open(tag, n)?;
        value.serialize(&mut *self)?;
        self.leave();
        Ok(())
    }

    fn declare(&mut self, len: Option<usize>) -> Result<u64, Invalid> {
        // bincode refuses sequences without a length; say so here first.
        let len = len.ok_or_else(|| {
            Invalid("a sequence or map without a known length cannot be stored".into())
        })?;
        self.elements = self.elements.saturating_add(len as u64);
        Ok(len as u64)
    }
}

impl ser::Serializer for &mut Shape<'_> {
    type Ok = ();
    type Error = Invalid;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        // As bincode's serializer: types then choose their compact form.
        false
    }

    fn serialize_bool(self, _: bool) -> Walk {
        self.tag(Tag::Bool, 0);
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Walk {
        self.tag(Tag::I8, 0);
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Walk {
        self.tag(Tag::I16, 0);
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Walk {
        self.tag(Tag::I32, 0);
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Walk {
        self.tag(Tag::I64, 0);
        Ok(())
    }
    fn serialize_i128(self, _: i128) -> Walk {
        self.tag(Tag::I128, 0);
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Walk {
        self.tag(Tag::U8, 0);
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Walk {
        self.tag(Tag::U16, 0);
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Walk {
        self.tag(Tag::U32, 0);
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Walk {
        self.tag(Tag::U64, 0);
        Ok(())
    }
    fn serialize_u128(self, _: u128) -> Walk {
        self.tag(Tag::U128, 0);
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Walk {
        self.tag(Tag::F32, 0);
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Walk {
        self.tag(Tag::F64, 0);
        Ok(())
    }
    fn serialize_char(self, _: char) -> Walk {
        self.tag(Tag::Char, 0);
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Walk {
        self.tag(Tag::Str, 0);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Walk {
        self.tag(Tag::Bytes, 0);
        Ok(())
    }
    fn serialize_none(self) -> Walk {
        self.tag(Tag::None, 0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Walk {
        self.nested(Tag::Some, 0, value)
    }
    fn serialize_unit(self) -> Walk {
        self.tag(Tag::Unit, 0);
        Ok(())
    }
    fn serialize_unit_struct(self, name: &'static str) -> Walk {
        self.tag(Tag::UnitStruct, 0);
        self.name(name);
        Ok(())
    }
    fn serialize_unit_variant(self, name: &'static str, index: u32, variant: &'static str) -> Walk {
        self.tag(Tag::Enum, 0);
        self.name(name);
        self.tag(Tag::UnitVariant, index.into());
        self.name(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Walk {
        self.open(Tag::NewtypeStruct, 0)?.name(name);
        value.serialize(&mut *self)?;
        self.leave();
        Ok(())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Walk {
        self.open(Tag::Enum, 0)?.name(name);
        self.tag(Tag::NewtypeVariant, index.into());
        self.name(variant);
        value.serialize(&mut *self)?;
        self.leave();
        Ok(())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Invalid> {
        self.declare(len)?;
        self.open(Tag::Seq, 0)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self, Invalid> {
        self.open(Tag::Tuple, len as u64)
    }
    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self, Invalid> {
        let this = self.open(Tag::TupleStruct, len as u64)?;
        this.name(name);
        Ok(this)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self, Invalid> {
        let this = self.open(Tag::Enum, 0)?;
        this.name(name);
        this.tag(Tag::TupleVariant, index.into());
        this.name(variant);
        this.tag(Tag::Tuple, len as u64);
        Ok(this)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self, Invalid> {
        self.declare(len)?;
        self.open(Tag::Map, 0)
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self, Invalid> {
        let this = self.open(Tag::Struct, len as u64)?;
        this.name(name);
        Ok(this)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self, Invalid> {
        let this = self.open(Tag::Enum, 0)?;
        this.name(name);
        this.tag(Tag::StructVariant, index.into());
        this.name(variant);
        this.tag(Tag::Struct, len as u64);
        Ok(this)
    }
}

impl ser::SerializeSeq for &mut Shape<'_> {
    type Ok = ();
    type Error = Invalid;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Walk {
        value.serialize(&mut **self)
    }
    fn end(self) -> Walk {
        self.leave();
        Ok(())
    }
}

impl ser::SerializeTuple for &mut Shape<'_> {
    type Ok = ();
    type Error = Invalid;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Walk {
        value.serialize(&mut **self)
    }
    fn end(self) -> Walk {
        self.leave();
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut Shape<'_> {
    type Ok = ();
    type Error = Invalid;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Walk {
        value.serialize(&mut **self)
    }
    fn end(self) -> Walk {
        self.leave();
        Ok(())
    }
}

impl ser::SerializeTupleVariant for &mut Shape<'_> {
    type Ok = ();
    type Error = Invalid;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Walk {
        value.serialize(&mut **self)
    }
    fn end(self) -> Walk {
        self.leave();
        Ok(())
    }
}

impl ser::SerializeMap for &mut Shape<'_> {
    type Ok = ();
    type Error = Invalid;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Walk {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Walk {
        value.serialize(&mut **self)
    }
    fn end(self) -> Walk {
        self.leave();
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Shape<'_> {
    type Ok = ();
    type Error = Invalid;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Walk {
        self.tag(Tag::Field, 0);
        self.name(key);
        value.serialize(&mut **self)
    }
    fn end(self) -> Walk {
        self.leave();
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Shape<'_> {
    type Ok = ();
    type Error = Invalid;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Walk {
        self.tag(Tag::Field, 0);
        self.name(key);
        value.serialize(&mut **self)
    }
    fn end(self) -> Walk {
        self.leave();
        Ok(())
    }
}
