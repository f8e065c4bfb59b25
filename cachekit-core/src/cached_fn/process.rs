//! What the cached functions of a process share: its configuration and
//! the backend the configuration selects, set up once, at [`init`] or at
//! the first call.
//!
//! A setup that fails (a bad setting, an unknown backend) is not kept: the
//! next attempt reads the configuration again (see `State` in the parent
//! module for how often cached functions try).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::config::{CORE_SETTINGS, ConfigSource, CoreSettings};
use crate::resolve;
use crate::{Backend, Result};

/// The configuration of this process, read once it reads without error.
pub(crate) struct Process {
    pub(crate) config: ConfigSource,
    pub(super) settings: CoreSettings,
    /// The backend the configuration selects, once built: shared by every
    /// cached function that names none, so that they share its connections.
    configured: OnceLock<Arc<dyn Backend>>,
}

impl Process {
    /// The backend for cached functions that name none: the process
    /// default if one is set (see [`crate::set_default_backend`]), else the
    /// one the configuration selects, built once.
    pub(crate) fn backend(&self) -> Result<Arc<dyn Backend>> {
        if let Some(backend) = resolve::default_backend() {
            return Ok(backend);
        }
        if let Some(backend) = self.configured.get() {
            return Ok(Arc::clone(backend));
        }
        // Built with no lock held (construction is the backend crate's code;
        // it opens no connection, so two callers building at once cost
        // little, and the first one's is kept). Read again: a configuration
        // fixed since the first read (a file written, a variable set) is
        // seen by the next attempt.
        let backend = resolve::resolve(None, &ConfigSource::from_process()?)?.backend;
        Ok(Arc::clone(self.configured.get_or_init(|| backend)))
    }
}

/// This process's configuration, once read without error.
static PROCESS: OnceLock<Process> = OnceLock::new();

/// This process's configuration if it has been read: never reads it (a
/// path that must not retry a broken configuration at every call).
pub(super) fn process_if_read() -> Option<&'static Process> {
    PROCESS.get()
}

/// This process's configuration, read now unless it was read before.
pub(crate) fn process() -> Result<&'static Process> {
    static READING: Mutex<()> = Mutex::new(());
    if let Some(process) = PROCESS.get() {
        return Ok(process);
    }
    let _reading = READING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(process) = PROCESS.get() {
        return Ok(process);
    }
    let config = ConfigSource::from_process()?;
    let settings: CoreSettings = config.extract(None, CORE_SETTINGS)?;
    Ok(PROCESS.get_or_init(|| Process {
        config,
        settings,
        configured: OnceLock::new(),
    }))
}

/// Reads and checks this process's cache configuration now, and resolves
/// the backend that cached functions and caches naming none will use: the
/// process default if set, else the one the configuration selects (built
/// now, and shared by every cached function after).
///
/// Call it at startup, where a broken configuration should stop the
/// service: it returns the error (a bad or empty setting, an unknown
/// backend, several backends' variables at once, a process-local backend
/// under `require_shared`). Without it, the same error is logged at the
/// first cached call (and at most once a minute after); the calls run
/// uncached meanwhile, and the setup is tried again after a back-off.
///
/// ```
/// # fn main() -> cachekit_core::Result<()> {
/// cachekit_core::init()?; // `cachekit::init()` in the facade
/// # Ok(())
/// # }
/// ```
pub fn init() -> Result<()> {
    let backend = process()?.backend()?;
    tracing::info!(
        backend = backend.name(),
        shared = backend.capabilities().shared,
        "cachekit: cached functions use the {} backend",
        backend.name()
    );
    Ok(())
}
