//! The `#[cache]` attribute macro for cachekit. Use it through the facade,
//! `cachekit::cache`; the facade's documentation describes its options.

mod expand;
mod options;
mod signature;

use darling::FromMeta;
use darling::ast::NestedMeta;
use proc_macro::TokenStream;
use proc_macro_crate::{FoundCrate, crate_name};
use quote::{format_ident, quote};

use crate::options::Options;
use crate::signature::Function;

/// Caches a function's results. Documented where users meet it, at
/// `cachekit::cache`: the options, the key, what is stored, the generated
/// companions (`_invalidate`, `_refresh`, `_stats`) and plain functions.
#[proc_macro_attribute]
pub fn cache(args: TokenStream, item: TokenStream) -> TokenStream {
    match cache_impl(args.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.write_errors().into(),
    }
}

fn cache_impl(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> darling::Result<proc_macro2::TokenStream> {
    let options = Options::from_list(&NestedMeta::parse_meta_list(args)?)
        .map_err(options::name_the_options)?;
    let item: syn::ItemFn = syn::parse2(item).map_err(|error| {
        darling::Error::from(syn::Error::new(
            error.span(),
            "#[cache] goes on a function (`fn` or `async fn`, free or in an `impl` block)",
        ))
    })?;
    let function = Function::check(item, &options)?;
    Ok(expand::expand(&function, &options, &facade_path()))
}

/// The path to the facade crate, even when the user renamed the dependency.
fn facade_path() -> proc_macro2::TokenStream {
    match crate_name("cachekit") {
        Ok(FoundCrate::Name(name)) => {
            let name = format_ident!("{name}");
            quote!(::#name)
        }
        // `Itself` is the facade's own tests, examples and benches, which
        // reach it by its name.
        Ok(FoundCrate::Itself) | Err(_) => quote!(::cachekit),
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    #[test]
    fn the_expansion_depends_on_the_source_alone() {
        let expand = || {
            super::cache_impl(
                quote!(ttl = 60),
                quote!(
                    async fn double(n: u64) -> u64 {
                        n * 2
                    }
                ),
            )
            .unwrap()
            .to_string()
        };
        let first = expand();
        assert_eq!(first, expand(), "two expansions of one item differ");
        let other = super::cache_impl(
            quote!(ttl = 60),
            quote!(
                async fn double(n: u64) -> u64 {
                    n * 3
                }
            ),
        )
        .unwrap()
        .to_string();
        assert_ne!(first, other, "items with other tokens get another site");
    }
}
