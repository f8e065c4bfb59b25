//! The options of `#[cache(...)]`, parsed with darling.

use std::fmt::Display;
use std::str::FromStr;

use darling::FromMeta;
use darling::util::PathList;
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Lit, LitStr, Meta, UnOp};

/// Everything `#[cache(...)]` accepts.
#[derive(Debug, Default, FromMeta)]
#[darling(default)]
pub(crate) struct Options {
    /// Seconds (`ttl = 300`) or a duration string (`ttl = "5m"`); 0 is no expiry.
    pub(crate) ttl: Option<Ttl>,
    /// The first part of every key (default: the module path).
    pub(crate) namespace: Option<Namespace>,
    /// An expression yielding the backend, evaluated once, on the first call.
    pub(crate) backend: Option<Expr>,
    /// An expression replacing the arguments' part of the key.
    pub(crate) key: Option<Expr>,
    /// Arguments left out of the key.
    pub(crate) skip: PathList,
    /// Whether `None` results are cached (default true).
    pub(crate) cache_none: Option<bool>,
    /// Whether results are kept in the in-process L1 tier (default true).
    pub(crate) l1: Option<bool>,
    /// The most entries the function's L1 holds (default: the
    /// `l1_max_entries` setting).
    pub(crate) l1_capacity: Option<L1Capacity>,
    /// A version of the stored data: raising it breaks with older entries.
    pub(crate) version: Option<Version>,
    /// The spread of the function's TTLs, in percent either way (default:
    /// the `ttl_jitter` setting).
    pub(crate) ttl_jitter: Option<TtlJitter>,
    /// How long a `None` result is stored (default: the function's TTL).
    pub(crate) none_ttl: Option<NoneTtl>,
    /// Stores `Err` results too, for this long.
    pub(crate) err_ttl: Option<ErrTtl>,
    /// How long a result is served stale past its TTL while one background
    /// refresh runs.
    pub(crate) stale: Option<Stale>,
    /// Refreshes early (XFetch), with this beta (1.0 when bare).
    pub(crate) early_refresh: Option<EarlyRefresh>,
    /// The tags of each result: format strings over the arguments.
    pub(crate) tags: Option<Tags>,
    /// Every result carries the function's own tag, for `_invalidate_all`.
    pub(crate) invalidate_all: darling::util::Flag,
    /// A batch function: a `Vec` of keys in, a map of the keys found out;
    /// each key's value is an entry of its own.
    pub(crate) batch: darling::util::Flag,
    /// The interop operation: keys and values as cachekit-py writes them.
    pub(crate) interop: Option<Interop>,
    /// Entries are encrypted, whatever `encryption.enabled` says.
    pub(crate) encrypt: darling::util::Flag,
}

impl Options {
    /// Whether the function gets `_invalidate_all` (its results carry its tag).
    pub(crate) fn invalidates_all(&self) -> bool {
        self.invalidate_all.is_present() || self.tags.is_some()
    }
}

/// The tags of a result: string literals, each a format string over the
/// arguments (`"user:{id}"`).
#[derive(Debug)]
pub(crate) struct Tags(pub(crate) Vec<LitStr>);

/// The most tags the attribute gives: an entry records 32, and the
/// function's own tag is one of them.
const MAX_TAGS: usize = 31;

const TAGS_HELP: &str = "give a list of string literals, each a format string over the arguments (`tags = [\"user:{id}\", \"org:{org}\"]`), at most 31";

impl FromMeta for Tags {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        let Expr::Array(array) = expr else {
            return match expr {
                Expr::Group(group) => Tags::from_expr(&group.expr),
                _ => Err(error(
                    expr.span(),
                    format!("`tags` must be a list; {TAGS_HELP}"),
                )),
            };
        };
        let mut tags = Vec::new();
        for element in &array.elems {
            match element {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(text),
                    ..
                }) => tags.push(text.clone()),
                other => {
                    return Err(error(
                        other.span(),
                        format!("a tag must be a string literal; {TAGS_HELP}"),
                    ));
                }
            }
        }
        if tags.is_empty() || tags.len() > MAX_TAGS {
            return Err(error(
                expr.span(),
                format!("{} tags; {TAGS_HELP}", tags.len()),
            ));
        }
        Ok(Tags(tags))
    }
}

impl Options {
    /// The span of the option that refreshes in the background (`stale` or
    /// `early_refresh`), if one is given.
    pub(crate) fn revalidates(&self) -> Option<(&'static str, Span)> {
        match (&self.stale, &self.early_refresh) {
            (Some(stale), _) => Some(("stale", stale.1)),
            (None, Some(early)) => Some(("early_refresh", early.1)),
            (None, None) => None,
        }
    }
}

/// How long a result is served stale, in whole seconds, more than 0.
#[derive(Debug)]
pub(crate) struct Stale(pub(crate) u64, pub(crate) Span);

impl FromMeta for Stale {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        let help = "`stale` is how long a result is served past its TTL while it is refreshed in the background";
        let zero =
            format!("`stale` must be more than 0 ({help}): without a stale window, leave it out");
        match positive_seconds(expr, zero, format!("{help}; {TTL_HELP}"))? {
            // An entry records its stale window in milliseconds, in 32 bits.
            seconds if seconds > 4_294_967 => Err(error(
                expr.span(),
                format!(
                    "`stale` is at most 49 days (4294967 seconds), what an entry records ({help})"
                ),
            )),
            seconds => Ok(Stale(seconds, expr.span())),
        }
    }
}

/// Early refresh's beta: a positive number (1.0 when the option is bare).
#[derive(Debug)]
pub(crate) struct EarlyRefresh(pub(crate) f64, pub(crate) Span);

const EARLY_REFRESH_HELP: &str = "write `early_refresh` alone (beta 1.0), or give beta, a positive number (`early_refresh = 2.0`): the larger, the earlier hot results are refreshed";

impl FromMeta for EarlyRefresh {
    fn from_meta(item: &Meta) -> darling::Result<Self> {
        match item {
            Meta::Path(path) => Ok(EarlyRefresh(1.0, path.span())),
            Meta::NameValue(named) => EarlyRefresh::from_expr(&named.value),
            Meta::List(list) => Err(error(list.span(), EARLY_REFRESH_HELP.to_owned())),
        }
    }

    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        let beta = match expr {
            Expr::Lit(ExprLit {
                lit: Lit::Float(float),
                ..
            }) => float.base10_parse::<f64>().ok(),
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) => int.base10_parse::<u32>().ok().map(f64::from),
            Expr::Group(group) => return EarlyRefresh::from_expr(&group.expr),
            _ => None,
        };
        match beta {
            Some(beta) if beta.is_finite() && beta > 0.0 => Ok(EarlyRefresh(beta, expr.span())),
            _ => Err(error(
                expr.span(),
                format!("`early_refresh` is not a valid beta; {EARLY_REFRESH_HELP}"),
            )),
        }
    }
}

/// How long a `None` result is stored, in whole seconds, more than 0.
#[derive(Debug)]
pub(crate) struct NoneTtl(pub(crate) u64, pub(crate) Span);

impl FromMeta for NoneTtl {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        let zero =
            "`none_ttl` must be more than 0: to store no `None` at all, write `cache_none = false`";
        let bad = format!("`none_ttl` is how long a `None` result is stored; {TTL_HELP}");
        let seconds = positive_seconds(expr, zero.to_owned(), bad)?;
        Ok(NoneTtl(seconds, expr.span()))
    }
}

/// How long an `Err` result is stored, in whole seconds, more than 0.
#[derive(Debug)]
pub(crate) struct ErrTtl(pub(crate) u64, pub(crate) Span);

impl FromMeta for ErrTtl {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        let zero = "`err_ttl` must be more than 0: to store no `Err`, leave it out (errors are not stored by default)";
        let bad = format!("`err_ttl` is how long an `Err` result is stored; {TTL_HELP}");
        let seconds = positive_seconds(expr, zero.to_owned(), bad)?;
        Ok(ErrTtl(seconds, expr.span()))
    }
}

/// Every option of `#[cache]`, for errors: darling lists the options of an
/// unknown one only while there are fewer than ten.
const OPTION_NAMES: &[&str] = &[
    "ttl",
    "namespace",
    "backend",
    "key",
    "skip",
    "cache_none",
    "l1",
    "l1_capacity",
    "version",
    "ttl_jitter",
    "none_ttl",
    "err_ttl",
    "stale",
    "early_refresh",
    "tags",
    "invalidate_all",
    "batch",
];

/// `errors` with every unknown option's error naming the options there
/// are, unless it suggests one already.
pub(crate) fn name_the_options(errors: darling::Error) -> darling::Error {
    let listed = OPTION_NAMES
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    darling::Error::multiple(
        errors
            .into_iter()
            .map(|error| {
                let message = error.to_string();
                if message.starts_with("Unknown field") && !message.contains("Did you mean") {
                    darling::Error::from(syn::Error::new(
                        error.span(),
                        format!("{message}; the options are {listed}"),
                    ))
                } else {
                    error
                }
            })
            .collect(),
    )
}

/// A spread of TTLs in percent, from 0 to 50.
#[derive(Debug)]
pub(crate) struct TtlJitter(pub(crate) u32);

const TTL_JITTER_HELP: &str = "give a whole number of percent from 0 to 50 (`ttl_jitter = 10`): each TTL is spread by up to that much either way";

impl FromMeta for TtlJitter {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        match integer(expr, "ttl_jitter", TTL_JITTER_HELP)? {
            (percent, _) if percent <= 50 => Ok(TtlJitter(percent)),
            (_, span) => Err(error(
                span,
                format!("`ttl_jitter` is out of range; {TTL_JITTER_HELP}"),
            )),
        }
    }
}

/// A version of the stored data, a whole number.
#[derive(Debug)]
pub(crate) struct Version(pub(crate) u32);

const VERSION_HELP: &str = "give a whole number from 0 to 4294967295 (`version = 2`); raise it when what the function returns changes meaning";

impl FromMeta for Version {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        integer(expr, "version", VERSION_HELP).map(|(version, _)| Version(version))
    }
}

/// The most entries a function's L1 holds, at least 1.
#[derive(Debug)]
pub(crate) struct L1Capacity(pub(crate) usize, pub(crate) Span);

const L1_CAPACITY_HELP: &str = "give a whole number of entries, at least 1 (`l1_capacity = 1000`); to keep no copies in process, write `l1 = false`";

impl FromMeta for L1Capacity {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        match integer(expr, "l1_capacity", L1_CAPACITY_HELP)? {
            (0, span) => Err(error(
                span,
                format!("`l1_capacity` cannot be 0; {L1_CAPACITY_HELP}"),
            )),
            (entries, span) => Ok(L1Capacity(entries, span)),
        }
    }
}

/// The integer literal given to `option`, and its span; the errors end
/// with `help`.
fn integer<N: FromStr>(expr: &Expr, option: &str, help: &str) -> darling::Result<(N, Span)>
where
    N::Err: Display,
{
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int
            .base10_parse::<N>()
            .map(|n| (n, int.span()))
            .map_err(|_| error(int.span(), format!("`{option}` is out of range; {help}"))),
        Expr::Group(group) => integer(&group.expr, option, help),
        _ => Err(error(
            expr.span(),
            format!("`{option}` must be an integer literal; {help}"),
        )),
    }
}

/// A TTL in whole seconds.
#[derive(Debug)]
pub(crate) struct Ttl(pub(crate) u64);

const TTL_HELP: &str = "give whole seconds (`ttl = 300`), a duration string (`ttl = \"5m\"`, `\"1h30m\"`; units s, m, h, d), or `ttl = 0` for no expiry";

impl FromMeta for Ttl {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        match expr {
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) if int.base10_digits().starts_with('-') => Err(error(
                int.span(),
                format!("`ttl` cannot be negative; {TTL_HELP}"),
            )),
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) => int
                .base10_parse::<u64>()
                .map(Ttl)
                .map_err(|_| error(int.span(), format!("`ttl` is too large; {TTL_HELP}"))),
            Expr::Lit(ExprLit {
                lit: Lit::Str(text),
                ..
            }) => parse_duration(&text.value())
                .map(Ttl)
                .map_err(|reason| error(text.span(), format!("{reason}; {TTL_HELP}"))),
            Expr::Unary(ExprUnary {
                op: UnOp::Neg(_), ..
            }) => Err(error(
                expr.span(),
                format!("`ttl` cannot be negative; {TTL_HELP}"),
            )),
            Expr::Group(group) => Ttl::from_expr(&group.expr),
            _ => Err(error(
                expr.span(),
                format!("`ttl` must be a literal; {TTL_HELP}"),
            )),
        }
    }
}

/// Seconds in a duration string such as `"90s"`, `"5m"`, `"1h30m"`, `"2d"`.
fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("`ttl` is empty".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(format!("`ttl = \"{text}\"` has an unknown unit `{c}`")),
        };
        let amount: u64 = digits
            .parse()
            .map_err(|_| format!("`ttl = \"{text}\"` has a unit `{c}` without a number"))?;
        total = amount
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(|| format!("`ttl = \"{text}\"` is too large"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "`ttl = \"{text}\"` ends in a number without a unit"
        ));
    }
    Ok(total)
}

/// A namespace kept as written in keys.
#[derive(Debug)]
pub(crate) struct Namespace(pub(crate) LitStr);

impl FromMeta for Namespace {
    fn from_value(value: &Lit) -> darling::Result<Self> {
        let Lit::Str(text) = value else {
            return Err(error(
                value.span(),
                "`namespace` must be a string literal".into(),
            ));
        };
        let namespace = text.value();
        let valid = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'));
        if !valid {
            return Err(error(
                text.span(),
                "`namespace` must be 1 to 64 letters, digits, `_`, `-`, `.` or `/` (it is the readable first part of every key)".into(),
            ));
        }
        Ok(Namespace(text.clone()))
    }
}

/// An interop segment (`interop = "get_user"`, or the namespace of an
/// interop function), checked as cachekit-py checks it.
#[derive(Debug)]
pub(crate) struct Interop(pub(crate) LitStr);

impl FromMeta for Interop {
    fn from_value(value: &Lit) -> darling::Result<Self> {
        let Lit::Str(text) = value else {
            return Err(error(
                value.span(),
                "`interop` must be a string literal: the operation's name, as the Python decorator's `interop=` gives it".into(),
            ));
        };
        check_segment("operation", &text.value(), false)
            .map_err(|reason| error(text.span(), format!("`interop`: {reason}")))?;
        Ok(Interop(text.clone()))
    }
}

/// Checks an interop segment (`what`: `operation` or `namespace`, which
/// must not be `ns` or `nsapi`): the reason it is refused, if it is.
pub(crate) fn check_segment(what: &str, segment: &str, namespace: bool) -> Result<(), String> {
    let bytes = segment.as_bytes();
    let valid = matches!(bytes.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'));
    if !valid {
        return Err(format!(
            "the {what} {segment:?} must be 1 to 64 of `a-z`, `0-9`, `.`, `_` and `-`, starting with a letter or digit (interop keys are shared with other languages, which refuse anything else)"
        ));
    }
    if segment.contains("..") {
        return Err(format!("the {what} {segment:?} must not contain `..`"));
    }
    if namespace && matches!(segment, "ns" | "nsapi") {
        return Err(format!(
            "the namespace {segment:?} is reserved by cachekit's servers; choose another"
        ));
    }
    Ok(())
}

/// The whole seconds of a duration option (as `ttl` reads them), more than
/// 0: else the error `zero`, or `bad` for what is not a duration.
fn positive_seconds(expr: &Expr, zero: String, bad: String) -> darling::Result<u64> {
    match Ttl::from_expr(expr) {
        Ok(Ttl(0)) => Err(error(expr.span(), zero)),
        Ok(Ttl(seconds)) => Ok(seconds),
        Err(_) => Err(error(expr.span(), bad)),
    }
}

fn error(span: Span, message: String) -> darling::Error {
    darling::Error::custom(message).with_span(&span)
}

#[cfg(test)]
mod tests {
    use darling::FromMeta;
    use darling::ast::NestedMeta;

    use super::{OPTION_NAMES, Options, name_the_options, parse_duration};

    fn parse(args: &str) -> darling::Result<Options> {
        let args: proc_macro2::TokenStream = args.parse().unwrap();
        Options::from_list(&NestedMeta::parse_meta_list(args).unwrap())
    }

    #[test]
    fn every_listed_option_is_one_and_an_unknown_one_lists_them() {
        for name in OPTION_NAMES {
            let value = match *name {
                "skip" => "skip(a)".to_owned(),
                "namespace" | "key" => format!("{name} = \"x\""),
                "backend" => "backend = make()".to_owned(),
                "cache_none" | "l1" => format!("{name} = true"),
                "none_ttl" | "err_ttl" | "stale" => format!("{name} = \"30s\""),
                "early_refresh" | "invalidate_all" | "batch" => (*name).to_owned(),
                "tags" => "tags = [\"t\"]".to_owned(),
                _ => format!("{name} = 1"),
            };
            assert!(parse(&value).is_ok(), "`{value}` is an option");
        }
        let error = name_the_options(parse("expires = 30").unwrap_err()).to_string();
        assert!(error.contains("Unknown field: `expires`"), "{error}");
        for name in OPTION_NAMES {
            assert!(error.contains(&format!("`{name}`")), "{error}");
        }
    }

    #[test]
    fn duration_strings() {
        assert_eq!(parse_duration("300s"), Ok(300));
        assert_eq!(parse_duration("5m"), Ok(300));
        assert_eq!(parse_duration("1h30m"), Ok(5_400));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert!(parse_duration("5").unwrap_err().contains("without a unit"));
        assert!(
            parse_duration("5w")
                .unwrap_err()
                .contains("unknown unit `w`")
        );
        assert!(
            parse_duration("m")
                .unwrap_err()
                .contains("without a number")
        );
        assert!(parse_duration("").is_err());
    }
}
