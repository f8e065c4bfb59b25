//! [`InteropArg`]: the Rust types that are interop arguments, and the
//! interop value each one is.
//!
//! `Vec<u8>`, `[u8]` and `[u8; N]` are *arrays of integers*, as a Python
//! list of ints is; only [`bytes::Bytes`] is MessagePack bin (Python `bytes`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use super::datetime::system_time_micros;
use super::{InteropError, InteropValue};

/// A Rust value that is an argument of an interop call: it has one
/// [`InteropValue`], which hashes as cachekit-py hashes the same Python value.
///
/// Implemented for integers, floats, `bool`, strings, `Option`, sequences,
/// tuples (up to 6), string-keyed maps, sets, [`bytes::Bytes`] (bin),
/// [`SystemTime`] and, with their features, `uuid::Uuid` and
/// `chrono::DateTime<Utc>`. `Vec<u8>` is a list of ints, not bytes. A struct
/// implements it with [`InteropValue::from_serde`]:
///
/// ```
/// # use cachekit_core::interop::{InteropArg, InteropError, InteropValue};
/// #[derive(serde::Serialize)]
/// struct Filter { team: String, limit: u32 }
///
/// impl InteropArg for Filter {
///     fn to_interop(&self) -> Result<InteropValue, InteropError> {
///         InteropValue::from_serde(self)
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an interop argument",
    note = "interop arguments are integers, finite floats, bool, strings, Option, Vec/slices/arrays, \
            tuples, maps with string keys, sets, bytes::Bytes (bin; a Vec<u8> is a list of ints), \
            SystemTime, uuid::Uuid and chrono::DateTime<Utc> (with their features)",
    note = "for a struct, implement `InteropArg` with `InteropValue::from_serde(self)`"
)]
pub trait InteropArg {
    /// The interop value of this argument, or the error saying why Python
    /// could not have passed it.
    fn to_interop(&self) -> Result<InteropValue, InteropError>;
}

impl InteropArg for InteropValue {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        Ok(self.clone())
    }
}

macro_rules! ints {
    ($($ty:ty)*) => {$(
        impl InteropArg for $ty {
            fn to_interop(&self) -> Result<InteropValue, InteropError> {
                Ok(InteropValue::Int(*self as i128))
            }
        }
    )*};
}

ints!(i8 i16 i32 i64 isize u8 u16 u32 u64 usize);

impl InteropArg for i128 {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        InteropValue::int(*self)
    }
}

impl InteropArg for u128 {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        InteropValue::uint(*self)
    }
}

impl InteropArg for f32 {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        InteropValue::float(f64::from(*self))
    }
}

impl InteropArg for f64 {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        InteropValue::float(*self)
    }
}

impl InteropArg for bool {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Bool(*self))
    }
}

impl InteropArg for char {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Str(self.to_string()))
    }
}

impl InteropArg for str {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Str(self.to_owned()))
    }
}

impl InteropArg for String {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Str(self.clone()))
    }
}

impl<T: InteropArg + ?Sized> InteropArg for &T {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        (**self).to_interop()
    }
}

impl<T: InteropArg + ?Sized> InteropArg for Box<T> {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        (**self).to_interop()
    }
}

impl<T: InteropArg + ?Sized> InteropArg for Arc<T> {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        (**self).to_interop()
    }
}

impl<T: InteropArg + ?Sized> InteropArg for Rc<T> {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        (**self).to_interop()
    }
}

impl<T: InteropArg> InteropArg for Option<T> {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        match self {
            Some(value) => value.to_interop(),
            None => Ok(InteropValue::Nil),
        }
    }
}

/// The interop values of `items`, in order.
fn all<'a, T: InteropArg + 'a>(
    items: impl IntoIterator<Item = &'a T>,
) -> Result<Vec<InteropValue>, InteropError> {
    items.into_iter().map(InteropArg::to_interop).collect()
}

impl<T: InteropArg> InteropArg for [T] {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        all(self).map(InteropValue::Array)
    }
}

impl<T: InteropArg, const N: usize> InteropArg for [T; N] {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        all(self).map(InteropValue::Array)
    }
}

impl<T: InteropArg> InteropArg for Vec<T> {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        all(self).map(InteropValue::Array)
    }
}

impl<T: InteropArg> InteropArg for VecDeque<T> {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        all(self).map(InteropValue::Array)
    }
}

macro_rules! tuples {
    ($(($($name:ident)+))*) => {$(
        impl<$($name: InteropArg),+> InteropArg for ($($name,)+) {
            #[allow(non_snake_case)]
            fn to_interop(&self) -> Result<InteropValue, InteropError> {
                let ($($name,)+) = self;
                Ok(InteropValue::Array(vec![$($name.to_interop()?),+]))
            }
        }
    )*};
}

tuples! {
    (A)
    (A B)
    (A B C)
    (A B C D)
    (A B C D E)
    (A B C D E F)
}

/// The interop map of string-keyed `entries`.
fn map<'a, K: AsRef<str> + 'a, V: InteropArg + 'a>(
    entries: impl IntoIterator<Item = (&'a K, &'a V)>,
) -> Result<InteropValue, InteropError> {
    let mut map = BTreeMap::new();
    for (key, value) in entries {
        let key = key.as_ref();
        let value = value
            .to_interop()
            .map_err(|e| InteropError::new(format!("under the key {key:?}: {}", e.reason())))?;
        map.insert(key.to_owned(), value);
    }
    Ok(InteropValue::Map(map))
}

impl<K: AsRef<str>, V: InteropArg, S: BuildHasher> InteropArg for HashMap<K, V, S> {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        map(self)
    }
}

impl<K: AsRef<str>, V: InteropArg> InteropArg for BTreeMap<K, V> {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        map(self)
    }
}

impl<T: InteropArg, S: BuildHasher> InteropArg for HashSet<T, S> {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        all(self).map(InteropValue::Set)
    }
}

impl<T: InteropArg> InteropArg for BTreeSet<T> {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        all(self).map(InteropValue::Set)
    }
}

impl InteropArg for bytes::Bytes {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Bytes(self.to_vec()))
    }
}

impl InteropArg for SystemTime {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        system_time_micros(*self).map(|unix_micros| InteropValue::DateTime { unix_micros })
    }
}

#[cfg(feature = "uuid")]
impl InteropArg for uuid::Uuid {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        Ok(InteropValue::Uuid(*self.as_bytes()))
    }
}

#[cfg(feature = "chrono")]
impl InteropArg for chrono::DateTime<chrono::Utc> {
    fn to_interop(&self) -> Result<InteropValue, InteropError> {
        // Whole seconds floored, plus non-negative microseconds (a leap second
        // counts as the second before it): floored toward −∞.
        let micros = i128::from(self.timestamp()) * 1_000_000
            + i128::from(self.timestamp_subsec_micros().min(999_999));
        i64::try_from(micros)
            .map(|unix_micros| InteropValue::DateTime { unix_micros })
            .map_err(|_| {
                InteropError::new("the datetime is too far from 1970 for 64-bit microseconds")
            })
    }
}
