//! The core conformance kit against the file backend: with the default
//! settings, and with `fsync` off. Every case's backend opens the same
//! directory, as the processes of one host would.

use std::process::ExitCode;
use std::sync::Arc;

use cachekit_core::backend::testkit::Conformance;
use cachekit_file::{FileBackend, FileBackendConfig};

fn main() -> ExitCode {
    let dir = tempfile::tempdir().expect("a temp directory");
    let config = FileBackendConfig::default().cache_dir(dir.path().join("cache"));
    let no_fsync = config.clone().fsync(false);
    let make = |config: FileBackendConfig| {
        move || -> Arc<dyn cachekit_core::Backend> {
            Arc::new(FileBackend::new(config.clone()).expect("the file backend opens"))
        }
    };
    let code = Conformance::run_all([
        Conformance::in_process(make(config)).named("file"),
        Conformance::in_process(make(no_fsync)).named("no_fsync"),
    ]);
    drop(dir);
    code
}
