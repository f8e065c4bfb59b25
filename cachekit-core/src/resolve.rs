//! Which backend a cache uses when its code names none.
//!
//! Priority: an explicit backend > the process default
//! ([`set_default_backend`]) > configuration (`backend` in the file or
//! `CACHEKIT_BACKEND`, else the one backend whose variables are set) >
//! in-process memory (L1-only: no server, no warning, unless
//! `require_shared` is set: then a backend that configuration chose and
//! that is not shared across processes is an error).
//!
//! Backend crates register a [`BackendFactory`] with `inventory::submit!`;
//! the facade registers a factory without a constructor for each backend
//! whose cargo feature is off, so that naming it gives an error that says
//! which feature to enable. The core names no backend but its own `memory`.

use std::sync::{Arc, RwLock};

use crate::config::{CORE_SETTINGS, ConfigSource, CoreSettings};
use crate::{Backend, ConfigOrigin, Error, MemoryBackend, Result};

/// Builds a backend from configuration.
pub type BuildBackend = fn(&ConfigSource) -> Result<Arc<dyn Backend>>;

/// How to build one kind of backend from configuration.
#[derive(Debug)]
pub struct BackendFactory {
    /// The name used in `CACHEKIT_BACKEND` (`memcached`).
    pub name: &'static str,
    /// The facade's cargo feature that brings it in.
    pub feature: &'static str,
    /// Variables whose presence selects this backend when `CACHEKIT_BACKEND` is unset.
    pub selecting_vars: &'static [&'static str],
    /// Builds the backend from the config; `None` when its feature is off.
    pub build: Option<BuildBackend>,
}

inventory::collect!(BackendFactory);

inventory::submit! {
    BackendFactory {
        name: MemoryBackend::NAME,
        feature: "(always available)",
        selecting_vars: &[],
        build: Some(|_| Ok(Arc::new(MemoryBackend::new()))),
    }
}

/// Every registered factory; one with a constructor wins over a placeholder of the same name.
pub fn factories() -> Vec<&'static BackendFactory> {
    let mut all: Vec<&'static BackendFactory> = Vec::new();
    for factory in inventory::iter::<BackendFactory> {
        match all.iter_mut().find(|f| f.name == factory.name) {
            Some(existing) if existing.build.is_none() => *existing = factory,
            Some(_) => {}
            None => all.push(factory),
        }
    }
    all.sort_by_key(|f| f.name);
    all
}

static PROCESS_DEFAULT: RwLock<Option<Arc<dyn Backend>>> = RwLock::new(None);

/// Makes `backend` the backend of every cache created afterwards that names
/// none, ahead of the environment. Replaces an earlier default.
pub fn set_default_backend(backend: Arc<dyn Backend>) {
    *PROCESS_DEFAULT.write().unwrap_or_else(|e| e.into_inner()) = Some(backend);
}

/// Forgets the process default set by [`set_default_backend`].
pub fn clear_default_backend() {
    *PROCESS_DEFAULT.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The process default, if one is set.
pub(crate) fn default_backend() -> Option<Arc<dyn Backend>> {
    PROCESS_DEFAULT
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Which rung of the priority chose the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolvedFrom {
    /// Named in code.
    Explicit,
    /// The process default.
    ProcessDefault,
    /// Named by the `backend` setting.
    Configured(ConfigOrigin),
    /// The only backend whose variable is set.
    Detected {
        /// The variable that selected it.
        variable: &'static str,
    },
    /// Nothing configured: in-process memory.
    L1Only,
}

impl std::fmt::Display for ResolvedFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolvedFrom::Explicit => f.write_str("named in code"),
            ResolvedFrom::ProcessDefault => f.write_str("the process default"),
            ResolvedFrom::Configured(origin) => write!(f, "named by {origin}"),
            ResolvedFrom::Detected { variable } => write!(f, "selected by {variable}"),
            ResolvedFrom::L1Only => f.write_str("nothing configured"),
        }
    }
}

/// A chosen backend and why it was chosen.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// Why.
    pub from: ResolvedFrom,
}

/// Resolves with this process's default and registered factories.
pub(crate) fn resolve(
    explicit: Option<Arc<dyn Backend>>,
    config: &ConfigSource,
) -> Result<Resolved> {
    resolve_with(explicit, default_backend(), config, &factories())
}

/// Resolution over explicit inputs; `resolve` fills them from the process.
pub fn resolve_with(
    explicit: Option<Arc<dyn Backend>>,
    process_default: Option<Arc<dyn Backend>>,
    config: &ConfigSource,
    factories: &[&BackendFactory],
) -> Result<Resolved> {
    if let Some(backend) = explicit {
        return Ok(Resolved {
            backend,
            from: ResolvedFrom::Explicit,
        });
    }
    if let Some(backend) = process_default {
        return Ok(Resolved {
            backend,
            from: ResolvedFrom::ProcessDefault,
        });
    }
    let settings: CoreSettings = config.extract(None, CORE_SETTINGS)?;
    let resolved = configured(config, &settings.backend, factories)?;
    if settings.require_shared && !resolved.backend.capabilities().shared {
        return Err(Error::Config {
            setting: "require_shared".into(),
            origin: config.origin(&CORE_SETTINGS[REQUIRE_SHARED]),
            reason: format!(
                "the configuration chose the {} backend ({}), which is not shared across processes; \
                 configure a shared backend (CACHEKIT_BACKEND, CACHEKIT_MEMCACHED_SERVERS, ...) or unset require_shared",
                resolved.backend.name(),
                resolved.from
            ),
        });
    }
    Ok(resolved)
}

/// Index of `backend` in [`CORE_SETTINGS`] (checked by a test).
pub(crate) const BACKEND: usize = 0;
/// Index of `require_shared` in [`CORE_SETTINGS`] (checked by a test).
pub(crate) const REQUIRE_SHARED: usize = 6;

/// The backend the configuration chooses: the one `named` (the `backend`
/// setting), else the one detected.
fn configured(
    config: &ConfigSource,
    named: &str,
    factories: &[&BackendFactory],
) -> Result<Resolved> {
    let setting = &CORE_SETTINGS[BACKEND];
    let named = named.trim();
    if !named.is_empty() {
        let origin = config.origin(setting);
        let factory = factories
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(named))
            .ok_or_else(|| Error::Config {
                setting: setting.key.into(),
                origin: origin.clone(),
                reason: format!(
                    "unknown backend {named:?}; known backends: {}",
                    names(factories)
                ),
            })?;
        let backend = build(factory, config, setting.key, origin.clone())?;
        return Ok(Resolved {
            backend,
            from: ResolvedFrom::Configured(origin),
        });
    }
    detect(config, factories)
}

/// Picks the one backend whose selecting variables are set.
fn detect(config: &ConfigSource, factories: &[&BackendFactory]) -> Result<Resolved> {
    let mut found: Vec<(&BackendFactory, &'static str)> = Vec::new();
    for factory in factories {
        // A generic variable such as REDIS_URL often serves other code; it
        // selects a backend only when that backend is compiled in. Set even
        // to nothing, it selects: the backend's own settings then say what is
        // wrong (an empty server list would otherwise fall back to memory unseen).
        let set = factory.selecting_vars.iter().copied().find(|var| {
            (factory.build.is_some() || var.starts_with("CACHEKIT_"))
                && (config.var(var).is_some() || config.is_set_but_empty(var))
        });
        if let Some(var) = set {
            found.push((factory, var));
        }
    }
    match found.as_slice() {
        [] => Ok(Resolved {
            backend: Arc::new(MemoryBackend::new()),
            from: ResolvedFrom::L1Only,
        }),
        [(factory, variable)] => {
            let origin = ConfigOrigin::Env((*variable).into());
            let backend = build(factory, config, CORE_SETTINGS[BACKEND].key, origin)?;
            Ok(Resolved {
                backend,
                from: ResolvedFrom::Detected { variable },
            })
        }
        several => {
            let vars: Vec<String> = several
                .iter()
                .map(|(f, var)| format!("{var} ({})", f.name))
                .collect();
            Err(Error::Config {
                setting: "backend".into(),
                origin: ConfigOrigin::Env(several[0].1.into()),
                reason: format!(
                    "variables for several backends are set: {}; set CACHEKIT_BACKEND to choose one",
                    vars.join(", ")
                ),
            })
        }
    }
}

fn build(
    factory: &BackendFactory,
    config: &ConfigSource,
    setting: &str,
    origin: ConfigOrigin,
) -> Result<Arc<dyn Backend>> {
    match factory.build {
        Some(build) => build(config),
        None => Err(Error::Config {
            setting: setting.into(),
            origin,
            reason: format!(
                "the {} backend is not compiled in; enable the `{}` feature of cachekit \
                 (cachekit = {{ version = \"0.1\", features = [\"{}\"] }})",
                factory.name, factory.feature, factory.feature
            ),
        }),
    }
}

fn names(factories: &[&BackendFactory]) -> String {
    factories
        .iter()
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_indexes_name_their_settings() {
        assert_eq!(CORE_SETTINGS[BACKEND].key, "backend");
        assert_eq!(CORE_SETTINGS[REQUIRE_SHARED].key, "require_shared");
    }
}
