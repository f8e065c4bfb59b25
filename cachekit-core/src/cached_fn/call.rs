//! The keys of one call of a cached function.

use serde::Serialize;
use smallvec::SmallVec;

use crate::interop::{self, InteropArg, Profile};

/// One call's keys: the L1 key (the serialized arguments or custom key, in
/// the function's own L1) and what the backend key is built from.
#[derive(Debug)]
pub struct Call {
    /// The state of the function called.
    pub(super) state: &'static super::State,
    /// The generation of the [scope](super::scope) in force when the call
    /// began (0: none); a copy made in another is not this call's.
    pub(super) generation: u64,
    pub(super) l1: SmallVec<[u8; 64]>,
    /// The key given to the cache (`name:hash` or `name:custom`), built on an L1 miss;
    /// `None` when the arguments could not be serialized: the call runs uncached.
    pub(super) part: Option<KeyPart>,
    /// The call's tags (`tags = [...]` in the attribute).
    pub(super) tags: Vec<String>,
    /// The number of interop arguments in `l1`.
    interop_args: u32,
}

impl Call {
    /// Starts the keys of a call of the function whose state is `state`.
    #[inline]
    pub(super) fn new(state: &'static super::State) -> Self {
        Call {
            state,
            generation: super::scope::generation(),
            l1: SmallVec::new(),
            part: Some(KeyPart::Args),
            tags: Vec::new(),
            interop_args: 0,
        }
    }

    /// A copy of these keys, to read with before the call's body runs.
    pub(super) fn duplicate(&self) -> Call {
        Call {
            state: self.state,
            generation: self.generation,
            l1: self.l1.clone(),
            part: self.part,
            tags: self.tags.clone(),
            interop_args: self.interop_args,
        }
    }

    /// The span of this call (see [`crate::trace`]); its backend and key
    /// are recorded once known ([`super::Chosen::traced`]).
    #[inline]
    pub(super) fn span(&self) -> tracing::Span {
        crate::trace::operation(&self.state.name, "", "call", None)
    }

    /// The serialized arguments or custom key: the L1 key.
    pub(super) fn args(&self) -> &[u8] {
        &self.l1
    }

    /// Adds an argument to the key. Arguments are written in the
    /// [key encoding](crate::key::args) in order, which gives the bytes of the
    /// tuple of all of them.
    #[inline]
    pub fn arg<T: KeyArg + ?Sized>(&mut self, value: &T) {
        self.push(value);
    }

    /// Adds an argument of an interop function (`interop = "..."`) to the
    /// key, in its canonical MessagePack (see [`interop`](crate::interop));
    /// a value that is not interop data (a NaN, a map with a key that is no
    /// string) makes the call run uncached, with a warning naming `name`.
    pub fn interop_arg<T: InteropArg + ?Sized>(&mut self, name: &'static str, value: &T) {
        if self.part.is_none() {
            return;
        }
        let mut encoded = Vec::new();
        match value
            .to_interop()
            .and_then(|value| interop::write(&value, Profile::Args, &mut encoded))
        {
            Ok(()) => {
                self.l1.extend_from_slice(&encoded);
                self.interop_args += 1;
            }
            Err(error) => {
                let error = error.for_argument(name);
                super::WARNINGS.warn(|suppressed| {
                    tracing::warn!(%error, suppressed, "an argument is not interop data: the call runs uncached");
                });
                self.part = None;
            }
        }
    }

    /// The interop hash of the arguments added (see [`interop::args_hash`]).
    pub(super) fn interop_hash(&self) -> String {
        interop::hash_encoded_args(self.interop_args, &self.l1)
    }

    /// Adds a tag to the call's result (see [`Cache::invalidate_tag`](crate::Cache::invalidate_tag)).
    pub fn tag(&mut self, tag: String) {
        self.tags.push(tag);
    }

    /// Adds the method's receiver to the key, first: instances with
    /// different state have different entries.
    pub fn receiver<T: KeySelf + ?Sized>(&mut self, value: &T) {
        self.push(value);
    }

    #[inline]
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) {
        if self.part.is_none() {
            return;
        }
        if let Err(error) = crate::key::encode_args(value, &mut self.l1) {
            self.unserializable(error);
        }
    }

    /// The call runs uncached: an argument could not be serialized.
    #[cold]
    fn unserializable(&mut self, error: crate::key::ArgsError) {
        super::WARNINGS.warn(|suppressed| {
            tracing::warn!(%error, suppressed, "an argument cannot be serialized: the call runs uncached");
        });
        self.part = None;
    }
}

/// A method's `Self` that can be part of a cache key: any `serde::Serialize` type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of the cache key of this method: it does not implement `serde::Serialize`",
    label = "`self` goes into the key, so that instances with different state keep apart",
    note = "derive `Serialize` for it; or leave `self` out of the key with `#[cache(skip(self))]` when the result does not depend on its state; or give the key with `#[cache(key = ...)]`"
)]
pub trait KeySelf: Serialize {}

impl<T: Serialize + ?Sized> KeySelf for T {}

/// An argument that can be part of a cache key: any `serde::Serialize` type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: it does not implement `serde::Serialize`",
    label = "this argument goes into the key",
    note = "leave the argument out of the key with `#[cache(skip(name))]`, or give the key with `#[cache(key = ...)]`"
)]
pub trait KeyArg: Serialize {}

impl<T: Serialize + ?Sized> KeyArg for T {}

#[derive(Debug, Clone, Copy)]
pub(super) enum KeyPart {
    /// The key encoding of the arguments follows the identity in the L1 key.
    Args,
    /// A key given in the attribute.
    Custom,
    /// The canonical MessagePack of the interop arguments follows the
    /// identity in the L1 key.
    Interop,
}
