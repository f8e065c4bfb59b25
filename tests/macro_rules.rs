//! `#[cache]` on items a `macro_rules!` invocation writes: expansions that
//! share their place in the source never share values.

use cachekit::cache;

pub(crate) struct LabelA;
pub(crate) struct LabelB;

/// Two expansions from one `macro_rules!` invocation share file, line and
/// column: they still get their own state.
macro_rules! labels {
    ($($ty:ident),*) => {$(
        impl $ty {
            #[cache]
            pub(crate) fn label(id: u64) -> String {
                format!("{}-{id}", stringify!($ty))
            }
        }
    )*};
}

labels!(LabelA, LabelB);

#[test]
fn expansions_from_one_macro_invocation_never_share_values() {
    assert_eq!(LabelA::label(1), "LabelA-1");
    assert_eq!(LabelB::label(1), "LabelB-1");
    assert_eq!(LabelB::label(1), "LabelB-1");
    assert_eq!(LabelA::label_stats().errors, 0);
    assert_eq!(
        LabelB::label_stats().errors,
        2,
        "same name and namespace: runs uncached"
    );
}

/// One `macro_rules!` invocation writing the same tokens into two `impl`
/// blocks, naming `Self`: two functions, never one's values for the other.
macro_rules! tagged {
    ($($ty:ident),*) => {$(
        impl $ty {
            #[cache]
            pub(crate) fn tag(id: u64) -> String {
                format!("{}-{id}", Self::TAG)
            }
        }
    )*};
}

struct TagA;
struct TagB;

impl TagA {
    const TAG: &str = "a";
}

impl TagB {
    const TAG: &str = "b";
}

tagged!(TagA, TagB);

#[test]
fn identical_tokens_naming_self_in_two_impls_never_share_values() {
    assert_eq!(TagA::tag(1), "a-1");
    assert_eq!(TagB::tag(1), "b-1");
    assert_eq!(TagB::tag(1), "b-1");
    assert_eq!(TagA::tag(1), "a-1");
}
