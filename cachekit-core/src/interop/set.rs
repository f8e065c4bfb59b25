//! Sets inside struct arguments, as Python hashes them.
//!
//! serde writes a `HashSet` or `BTreeSet` as a plain sequence, so
//! [`InteropValue::from_serde`](super::InteropValue::from_serde) cannot
//! tell it from a list: a set field of a struct argument would hash in
//! iteration order (a `HashSet`'s differs from process to process), not as
//! Python's sorted set. Mark such a field
//! `#[serde(with = "cachekit::interop::set")]`: it then hashes as a set.
//! Other serializers see the sequence alone, and reading is the set
//! type's own. (A set *argument* needs nothing: its [`InteropArg`](super::InteropArg)
//! is a set. A set in a stored value is refused, as Python refuses it.)

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::value::SET_NAME;

/// Writes `set` as a sequence, marked as a set for interop arguments.
pub fn serialize<T: Serialize + ?Sized, S: Serializer>(
    set: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_newtype_struct(SET_NAME, set)
}

/// Reads the set as its type reads itself.
pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    T::deserialize(deserializer)
}
