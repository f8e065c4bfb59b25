//! `docs/backends.md`: what each backend can do (its `Capabilities` const),
//! what each operation does without a capability (the core's
//! `CAPABILITY_USES`), and which backend a cache uses (the registered
//! factories).

use std::fmt::Write;
use std::time::Duration;

use cachekit::backends::file::FileBackend;
use cachekit::backends::memcached::MemcachedBackend;
use cachekit::backends::redis::RedisBackend;
use cachekit::{Capabilities, Capability, Error, MemoryBackend};
use cachekit_core::__private::{CAPABILITY_USES, WhenMissing, factories};

use crate::markdown::{self, GENERATED, code};

/// Where the page goes.
pub(crate) const PATH: &str = "docs/backends.md";

/// Every backend: its name, its page (relative to `docs/`) and its declaration.
const BACKENDS: &[(&str, &str, Capabilities)] = &[
    (
        MemoryBackend::NAME,
        "backends/memory.md",
        MemoryBackend::CAPABILITIES,
    ),
    (
        MemcachedBackend::NAME,
        "backends/memcached.md",
        MemcachedBackend::CAPABILITIES,
    ),
    (
        RedisBackend::NAME,
        "backends/redis.md",
        RedisBackend::CAPABILITIES,
    ),
    (
        FileBackend::NAME,
        "backends/file.md",
        FileBackend::CAPABILITIES,
    ),
];

/// The page.
pub(crate) fn page() -> String {
    let mut out = format!(
        "{GENERATED}\n\n# Backends\n\n\
         What each backend can do, what cachekit does when an operation needs\n\
         what a backend cannot do, and which backend a cache uses. Each\n\
         backend has its own page: {}. To write one, see\n\
         [writing-a-backend.md](writing-a-backend.md); what a capability means\n\
         for your code is in [capabilities.md](capabilities.md).\n\n",
        BACKENDS
            .iter()
            .map(|(name, page, _)| format!("[{name}]({page})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    capabilities(&mut out);
    when_missing(&mut out);
    resolution(&mut out);
    out
}

/// The capability table: one row per flag or limit, one column per backend.
fn capabilities(out: &mut String) {
    out.push_str(
        "## Capabilities\n\n\
         Each backend declares these as a `const` (`MemcachedBackend::CAPABILITIES`);\n\
         the framework reads them to fall back or to return `Error::Unsupported`,\n\
         and the conformance kit checks each backend against its declaration.\n\
         Limits are those of a backend built with default settings; a\n\
         configured backend reports its own through `Backend::capabilities()`.\n\n",
    );
    let mut header = vec!["".to_string()];
    header.extend(BACKENDS.iter().map(|(name, ..)| name.to_string()));
    let features: Vec<String> = BACKENDS.iter().map(|(name, ..)| feature(name)).collect();
    let mut rows = vec![row("cargo feature", |i, _| features[i].clone())];
    rows.extend(capability_rows());
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    out.push_str(&markdown::table(&header, rows));
    out.push('\n');
}

/// A row labelled `label` with one cell per backend.
fn row(label: &str, cell: impl Fn(usize, &Capabilities) -> String) -> Vec<String> {
    let mut cells = vec![label.to_string()];
    cells.extend(
        BACKENDS
            .iter()
            .enumerate()
            .map(|(i, (_, _, caps))| cell(i, caps)),
    );
    cells
}

/// One row per field of `Capabilities`. The destructuring names every
/// field, so a new one fails to compile here until the page shows it.
fn capability_rows() -> Vec<Vec<String>> {
    let flag = |label: &str, get: fn(&Capabilities) -> bool| {
        row(label, move |_, caps| yes_no(get(caps)).to_string())
    };
    let Capabilities {
        ttl: _,
        ttl_inspect: _,
        touch: _,
        lock: _,
        persistent: _,
        shared: _,
        max_ttl: _,
        max_value_size: _,
        max_key_len: _,
    } = Capabilities::NONE;
    vec![
        flag("expiry after a TTL (`ttl`)", |c| c.ttl),
        flag("read an entry's TTL (`ttl_inspect`)", |c| c.ttl_inspect),
        flag("refresh a TTL in place (`touch`)", |c| c.touch),
        flag("lock with a lease (`lock`)", |c| c.lock),
        flag("survives a restart (`persistent`)", |c| c.persistent),
        flag("seen by other processes (`shared`)", |c| c.shared),
        row("longest TTL kept (`max_ttl`)", |_, c| match c.max_ttl {
            Some(max) => format!("{} (longer ones are clamped)", duration(max)),
            None => "no limit".into(),
        }),
        row(
            "largest value, envelope included (`max_value_size`)",
            |_, c| match c.max_value_size {
                Some(max) => bytes(max),
                None => "no limit".into(),
            },
        ),
        row("longest key (`max_key_len`)", |_, c| {
            format!("{} bytes", c.max_key_len)
        }),
    ]
}

/// The table of what each operation does without the capability it needs,
/// with the backends that lack it.
fn when_missing(out: &mut String) {
    out.push_str(
        "## When a capability is missing\n\n\
         An operation that needs a capability the backend lacks either falls\n\
         back to something that keeps its promise within one process, or\n\
         returns `Error::Unsupported { backend, capability }`; it is never a\n\
         silent no-op.\n\n",
    );
    let rows = CAPABILITY_USES.iter().map(|usage| {
        let lacking: Vec<String> = BACKENDS
            .iter()
            .filter(|(_, _, caps)| !caps.has(usage.needs))
            .map(|(name, ..)| name.to_string())
            .collect();
        let without = match usage.without {
            WhenMissing::Unsupported => "`Error::Unsupported`".to_string(),
            WhenMissing::FallsBack(how) => format!("falls back to {how}"),
        };
        vec![
            usage.operation.to_string(),
            code(capability_field(usage.needs)),
            if lacking.is_empty() {
                "none".into()
            } else {
                lacking.join(", ")
            },
            without,
        ]
    });
    out.push_str(&markdown::table(
        &["operation", "needs", "backends without it", "without it"],
        rows,
    ));
    let example = Error::Unsupported {
        backend: MemcachedBackend::NAME,
        capability: Capability::Lock,
    };
    let _ = write!(
        out,
        "\nThe error says what to use instead; for a lock on Memcached:\n\n```text\n{example}\n```\n\n\
         Past the limits: a TTL over `max_ttl` is clamped to it, and a value over\n\
         `max_value_size` is refused with `Error::ValueTooLarge` (naming its size and\n\
         the limit) before anything is sent.\n\n"
    );
}

/// Which backend a cache uses, and what selects each.
fn resolution(out: &mut String) {
    out.push_str(
        "## Which backend a cache uses\n\n\
         A cache or cached function that names no backend in code uses, in\n\
         this order:\n\n\
         1. the backend its code names (`Cache::builder().backend(..)`, `#[cache(backend = ..)]`);\n\
         2. the process default, `cachekit::set_default_backend`;\n\
         3. configuration: `backend` in `cachekit.toml` or `CACHEKIT_BACKEND`,\n   \
            else the one backend whose variables below are set (several are an\n   \
            error that asks for `CACHEKIT_BACKEND`);\n\
         4. in-process memory, unless `require_shared` is set, which makes a\n   \
            backend not shared across processes an error.\n\n\
         A backend named by configuration whose cargo feature is off is an\n\
         `Error::Config` that names the feature.\n\n",
    );
    let rows = factories().into_iter().map(|factory| {
        let vars = if factory.selecting_vars.is_empty() {
            "(none: the fallback)".to_string()
        } else {
            factory
                .selecting_vars
                .iter()
                .map(|var| code(var))
                .collect::<Vec<_>>()
                .join(", ")
        };
        vec![code(factory.name), feature(factory.name), vars]
    });
    out.push_str(&markdown::table(
        &["`CACHEKIT_BACKEND`", "cargo feature", "selected by"],
        rows,
    ));
}

/// The cargo feature that brings in backend `name`, as its factory declares.
fn feature(name: &str) -> String {
    let factory = factories()
        .into_iter()
        .find(|factory| factory.name == name)
        .unwrap_or_else(|| panic!("no factory is registered for backend {name}"));
    if factory.feature.starts_with('(') {
        factory.feature.trim_matches(['(', ')']).to_string()
    } else {
        code(factory.feature)
    }
}

/// The field of `Capabilities` that declares `capability`.
fn capability_field(capability: Capability) -> &'static str {
    match capability {
        Capability::Ttl => "ttl",
        Capability::TtlInspect => "ttl_inspect",
        Capability::Touch => "touch",
        Capability::Lock => "lock",
        other => panic!("no field is known for {other:?}: name it here"),
    }
}

/// A flag as the table shows it.
fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

/// `duration` in the largest whole unit.
fn duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3_600 == 0 => format!("{} hours", s / 3_600),
        s => format!("{s} s"),
    }
}

/// `n` bytes with thousands separated, and in MiB past one.
fn bytes(n: usize) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if n % (1 << 20) == 0 {
        format!("{} MiB ({grouped} bytes)", n >> 20)
    } else if n > 1 << 20 {
        format!(
            "{grouped} bytes (about {:.1} MiB)",
            n as f64 / f64::from(1 << 20)
        )
    } else {
        format!("{grouped} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::GROUPS;

    /// A backend registered for configuration but missing here would be
    /// missing from the page: every factory has a column, and every backend
    /// but in-process memory (which has no settings) a configuration section.
    #[test]
    fn every_registered_backend_is_documented() {
        for factory in factories() {
            assert!(
                BACKENDS.iter().any(|(name, ..)| *name == factory.name),
                "backend `{}` is registered but not in BACKENDS: add its Capabilities",
                factory.name
            );
            assert!(
                factory.name == MemoryBackend::NAME
                    || GROUPS.iter().any(|group| group.table == Some(factory.name)),
                "backend `{}` has no section in configuration::GROUPS: add its SETTINGS",
                factory.name
            );
        }
    }
}
