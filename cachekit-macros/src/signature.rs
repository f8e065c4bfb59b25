//! What `#[cache]` needs to know about the function it is on, and the
//! signatures it refuses (with the reason and the fix).

use syn::visit::Visit;
use syn::{FnArg, GenericParam, Ident, ItemFn, Pat, ReturnType, Type, TypeImplTrait};

use crate::options::{Interop, Options, check_segment};

/// A cached function, checked.
pub(crate) struct Function {
    /// The function as written.
    pub(crate) item: ItemFn,
    /// Its named arguments, receiver excluded, in order.
    pub(crate) args: Vec<Arg>,
    /// The return type.
    pub(crate) output: Type,
    /// Which results are stored, from the return type and `cache_none`.
    pub(crate) policy: Policy,
    /// `self` is left out of the key (`skip(self)`).
    pub(crate) skip_self: bool,
}

/// One named argument.
pub(crate) struct Arg {
    pub(crate) name: Ident,
    pub(crate) ty: Type,
    /// Left out of the key (`skip(..)`).
    pub(crate) skipped: bool,
}

/// Which results are stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Every result.
    All,
    /// `Ok` values of a `Result`.
    Ok,
    /// `Some` values of an `Option` (`cache_none = false`).
    Some,
    /// Every result of an `Option`, `None` for its own TTL (`none_ttl`).
    Option,
    /// Every result of a `Result`, `Err` for its own TTL (`err_ttl`).
    Result,
}

impl Function {
    /// Checks `item` against the options; every problem found is reported.
    pub(crate) fn check(item: ItemFn, options: &Options) -> darling::Result<Function> {
        let mut errors = darling::Error::accumulator();
        let sig = &item.sig;
        if let Some(constness) = &sig.constness {
            errors.push(spanned(
                constness,
                "#[cache] cannot be used on a `const fn`: a cached call reads and writes a cache at run time",
            ));
        }
        for param in &sig.generics.params {
            match param {
                GenericParam::Lifetime(_) => {}
                GenericParam::Type(_) | GenericParam::Const(_) => errors.push(spanned(
                    param,
                    "#[cache] does not support generic functions: one key could then hold values of several types. Cache a non-generic function for each type you need",
                )),
            }
        }
        let mut args = Vec::new();
        for input in &sig.inputs {
            let FnArg::Typed(typed) = input else {
                continue;
            };
            if let Some(impl_trait) = find_impl_trait(&typed.ty) {
                errors.push(spanned(
                    impl_trait,
                    "#[cache] does not support `impl Trait` arguments (they make the function generic): take a concrete type, or `&dyn Trait` and `skip(..)` it",
                ));
                continue;
            }
            match &*typed.pat {
                Pat::Ident(pat) if pat.subpat.is_none() => args.push(Arg {
                    name: pat.ident.clone(),
                    ty: (*typed.ty).clone(),
                    skipped: false,
                }),
                pat => errors.push(spanned(
                    pat,
                    "#[cache] needs a plain argument name here (`name: Type`), to put the argument into the key or to `skip(name)` it",
                )),
            }
        }
        let mut skip_self = false;
        for path in options.skip.iter() {
            let found = path
                .get_ident()
                .and_then(|ident| args.iter_mut().find(|arg| arg.name == *ident));
            match found {
                Some(arg) => arg.skipped = true,
                None if path.is_ident("self") && sig.receiver().is_some() => skip_self = true,
                None if path.is_ident("self") => errors.push(spanned(
                    path,
                    &format!("`skip(self)`: `{}` takes no `self`", sig.ident),
                )),
                None => {
                    let names: Vec<String> = args.iter().map(|arg| arg.name.to_string()).collect();
                    errors.push(spanned(
                        path,
                        &format!(
                            "`skip({})`: `{}` has no such argument (its arguments: {})",
                            quote::quote!(#path),
                            sig.ident,
                            if names.is_empty() {
                                "none".into()
                            } else {
                                names.join(", ")
                            }
                        ),
                    ));
                }
            }
        }
        let output = match &sig.output {
            ReturnType::Default => {
                errors.push(spanned(
                    &sig.ident,
                    "#[cache] needs a function that returns a value: there is nothing to cache",
                ));
                None
            }
            ReturnType::Type(_, ty) => match &**ty {
                Type::ImplTrait(impl_trait) => {
                    errors.push(spanned(
                        impl_trait,
                        "#[cache] cannot store an `impl Trait` return value: return a concrete type that is `Serialize + DeserializeOwned`",
                    ));
                    None
                }
                ty => Some(ty.clone()),
            },
        };
        let policy = output.as_ref().map_or(Policy::All, |ty| {
            match (last_segment(ty).as_deref(), options.cache_none) {
                (Some("Result"), _) if options.err_ttl.is_some() => Policy::Result,
                (Some("Result"), _) => Policy::Ok,
                (Some("Option"), Some(false)) => Policy::Some,
                (Some("Option"), _) if options.none_ttl.is_some() => Policy::Option,
                (_, Some(false)) => {
                    errors.push(spanned(
                        ty,
                        "`cache_none = false` applies to functions returning `Option<T>`",
                    ));
                    Policy::All
                }
                _ => Policy::All,
            }
        });
        if let Some(none_ttl) = &options.none_ttl {
            let message = match policy {
                Policy::Option => None,
                Policy::Some => Some(
                    "`none_ttl` sets how long `None` is stored, and `cache_none = false` stores no `None`: drop one of them",
                ),
                _ => Some(
                    "`none_ttl` applies to functions returning `Option<T>`: it sets how long their `None` results are stored",
                ),
            };
            if let Some(message) = message {
                errors.push(darling::Error::custom(message).with_span(&none_ttl.1));
            }
        }
        if options.batch.is_present() {
            check_batch(&item, options, &args, output.as_ref(), &mut errors);
        }
        if let Some(interop) = &options.interop {
            check_interop(&item, options, interop, skip_self, &mut errors);
        }
        if let Some((option, span)) = options.revalidates() {
            check_revalidating(&item, options, option, span, &mut errors);
        }
        if let (Some(err_ttl), false) = (&options.err_ttl, policy == Policy::Result) {
            errors.push(
                darling::Error::custom(
                    "`err_ttl` applies to functions returning `Result<T, E>`: it stores their `Err` results too, for that long",
                )
                .with_span(&err_ttl.1),
            );
        }
        if let (Some(false), Some(capacity)) = (options.l1, &options.l1_capacity) {
            errors.push(
                darling::Error::custom(
                    "`l1_capacity` sizes the L1 copies that `l1 = false` turns off: drop one of them",
                )
                .with_span(&capacity.1),
            );
        }
        errors.finish()?;
        Ok(Function {
            output: output.expect("checked above"),
            item,
            args,
            policy,
            skip_self,
        })
    }
}

/// Checks a batch function: `async`, one key argument that is a `Vec`, a
/// map returned, and no option that `batch` does not combine with.
fn check_batch(
    item: &ItemFn,
    options: &Options,
    args: &[Arg],
    output: Option<&Type>,
    errors: &mut darling::error::Accumulator,
) {
    let span = options.batch.span();
    let mut refuse =
        |message: String| errors.push(darling::Error::custom(message).with_span(&span));
    if item.sig.asyncness.is_none() {
        refuse(format!(
            "`batch` needs an `async fn`: make `{}` async",
            item.sig.ident
        ));
    }
    let keyed: Vec<&Arg> = args.iter().filter(|arg| !arg.skipped).collect();
    match keyed.as_slice() {
        [arg] if last_segment(&arg.ty).as_deref() == Some("Vec") => {}
        _ => refuse(
            "`batch` needs one argument in the key, a `Vec` of keys (`ids: Vec<u64>`); `skip(..)` the others (a pool, a client)".to_owned(),
        ),
    }
    if !matches!(
        output.and_then(last_segment).as_deref(),
        Some("HashMap" | "BTreeMap")
    ) {
        refuse(
            "`batch` needs a map returned, from each key found to its value (`HashMap<u64, User>`, `BTreeMap<..>`)".to_owned(),
        );
    }
    let others = [
        ("key", options.key.is_some()),
        ("stale", options.stale.is_some()),
        ("early_refresh", options.early_refresh.is_some()),
        ("tags", options.tags.is_some()),
        ("invalidate_all", options.invalidate_all.is_present()),
        ("none_ttl", options.none_ttl.is_some()),
        ("err_ttl", options.err_ttl.is_some()),
        ("cache_none", options.cache_none.is_some()),
    ];
    for (other, _) in others.iter().filter(|(_, given)| *given) {
        refuse(format!(
            "`batch` does not combine with `{other}`: each key of a batch is an entry of its own"
        ));
    }
}

/// Checks an interop function: a namespace that is an interop segment, no
/// receiver in the key, and no option whose entries Python could not read.
fn check_interop(
    item: &ItemFn,
    options: &Options,
    interop: &Interop,
    skip_self: bool,
    errors: &mut darling::error::Accumulator,
) {
    if let Some(namespace) = &options.namespace {
        if let Err(reason) = check_segment("namespace", &namespace.0.value(), true) {
            errors.push(darling::Error::custom(reason).with_span(&namespace.0.span()));
        }
    }
    let span = interop.0.span();
    let mut refuse =
        |message: String| errors.push(darling::Error::custom(message).with_span(&span));
    if options.namespace.is_none() {
        refuse(
            "`interop` needs a `namespace`, the first part of the key the Python decorator's `namespace=` gives (`#[cache(interop = \"get_user\", namespace = \"users\")]`)".to_owned(),
        );
    }
    if item.sig.receiver().is_some() && !skip_self {
        refuse(
            "`interop` functions cannot be methods keyed by `self`: Python cannot hash an instance (it refuses interop methods too); write `skip(self)` when the result does not depend on it, or make it a free function".to_owned(),
        );
    }
    let others = [
        ("key", options.key.is_some()),
        ("version", options.version.is_some()),
        ("stale", options.stale.is_some()),
        ("early_refresh", options.early_refresh.is_some()),
        ("tags", options.tags.is_some()),
        ("invalidate_all", options.invalidate_all.is_present()),
        ("err_ttl", options.err_ttl.is_some()),
        ("batch", options.batch.is_present()),
    ];
    for (other, _) in others.iter().filter(|(_, given)| *given) {
        refuse(format!(
            "`interop` does not combine with `{other}`: an interop key is the operation and the arguments' hash, and an interop value is plain MessagePack, with no room for what `{other}` needs"
        ));
    }
}

/// Checks a function with `option` (`stale` or `early_refresh`, at
/// `span`): its body runs in a background refresh that outlives the call,
/// so its arguments are owned, and it has a TTL.
fn check_revalidating(
    item: &ItemFn,
    options: &Options,
    option: &str,
    span: proc_macro2::Span,
    errors: &mut darling::error::Accumulator,
) {
    let sig = &item.sig;
    if options.ttl.as_ref().is_some_and(|ttl| ttl.0 == 0) {
        errors.push(
            darling::Error::custom(format!(
                "`{option}` needs a TTL: with `ttl = 0` results never expire, so they are never stale or due"
            ))
            .with_span(&span),
        );
    }
    let borrowed = format!(
        "`{option}` runs the function's body in a background refresh that outlives the call, so the body cannot borrow: take an owned argument (`String` for `&str`, `Vec<T>` for `&[T]`, an `Arc<T>`)"
    );
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) if borrows(&receiver.ty) => errors.push(spanned(
                receiver,
                &format!("{borrowed}; for a method, take `self: Arc<Self>` or `self`"),
            )),
            FnArg::Typed(typed) if borrows(&typed.ty) => errors.push(spanned(&typed.ty, &borrowed)),
            _ => {}
        }
    }
}

/// Whether a type holds a reference or names a lifetime other than `'static`.
fn borrows(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'a> Visit<'a> for Finder {
        fn visit_type_reference(&mut self, reference: &'a syn::TypeReference) {
            let is_static = reference
                .lifetime
                .as_ref()
                .is_some_and(|lifetime| lifetime.ident == "static");
            self.0 |= !is_static;
            syn::visit::visit_type_reference(self, reference);
        }

        fn visit_lifetime(&mut self, lifetime: &'a syn::Lifetime) {
            self.0 |= lifetime.ident != "static";
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

/// The last path segment of a type (`Result` for `std::io::Result<T>`).
fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) if path.qself.is_none() => {
            path.path.segments.last().map(|s| s.ident.to_string())
        }
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}

/// The first `impl Trait` inside a type.
fn find_impl_trait(ty: &Type) -> Option<&TypeImplTrait> {
    struct Finder<'a>(Option<&'a TypeImplTrait>);
    impl<'a> Visit<'a> for Finder<'a> {
        fn visit_type_impl_trait(&mut self, node: &'a TypeImplTrait) {
            self.0.get_or_insert(node);
        }
    }
    let mut finder = Finder(None);
    finder.visit_type(ty);
    finder.0
}

fn spanned(tokens: impl quote::ToTokens, message: &str) -> darling::Error {
    darling::Error::from(syn::Error::new_spanned(tokens, message))
}
