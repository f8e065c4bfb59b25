//! Builds the `features` example twice, with memcached and with redis
//! compiled in, and runs each build against a real server: the same code
//! caches in the backend the configuration selects, and a configuration
//! that selects the backend left out names its feature.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use cachekit_core::backend::testkit::ServerProcess;

mod support;

use support::{clean_command, prebuilt_or_build, run_to_end};

/// How long one run of the example may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary of the example built with only `backend`:
/// `examples/features-BACKEND`, which `cargo xtask test` builds before the
/// tests, or else one built now in a target directory of this test's own
/// (cargo holds the lock of the one it runs the tests from). Both builds
/// leave out the default `macros` feature: with it, the features of shared
/// dependencies change and the second build compiles dozens of them again.
fn binary(backend: &str) -> PathBuf {
    prebuilt_or_build(
        &format!("features-{backend}"),
        "features",
        &["--no-default-features", "--features", backend],
        "examples-features",
    )
}

/// Runs `binary` with only the variables `vars`.
fn run(binary: &Path, vars: &[(&str, &str)]) -> Output {
    let mut command = clean_command(binary);
    command.envs(vars.iter().copied());
    run_to_end(command, RUN_TIMEOUT)
}

/// What `output` printed, for assertion messages.
fn printed(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `output` succeeded, with `compiled` backends, caching in `backend`:
/// the loader ran once for two calls.
fn assert_cached(output: &Output, compiled: &str, backend: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = format!(
        "compiled in: {compiled}\nbackend: {backend}\n\
         value: hello, ada\nvalue: hello, ada\nloads: 1\n"
    );
    assert!(
        output.status.success() && stdout == expected,
        "expected:\n{expected}\n{}",
        printed(output)
    );
}

/// `output` failed with status 2 and a configuration error that names
/// `feature` as the one to enable.
fn assert_names_feature(output: &Output, compiled: &str, feature: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}", printed(output));
    assert_eq!(stdout, format!("compiled in: {compiled}\n"));
    assert!(
        stderr.starts_with(
            "configuration error: invalid setting `backend` (from environment variable CACHEKIT_BACKEND): "
        ) && stderr.contains(&format!(
            "the {feature} backend is not compiled in; enable the `{feature}` feature"
        )),
        "{}",
        printed(output)
    );
}

#[test]
fn one_program_under_two_feature_sets() {
    let memcached_build = binary("memcached");
    let redis_build = binary("redis");
    let memcached = ServerProcess::memcached();
    let redis = ServerProcess::redis();

    let with_memcached = "memcached=on redis=off file=off";
    assert_cached(
        &run(
            &memcached_build,
            &[("CACHEKIT_MEMCACHED_SERVERS", &memcached.address())],
        ),
        with_memcached,
        "memcached",
    );
    assert_names_feature(
        &run(&memcached_build, &[("CACHEKIT_BACKEND", "redis")]),
        with_memcached,
        "redis",
    );

    let with_redis = "memcached=off redis=on file=off";
    let redis_url = format!("redis://{}", redis.address());
    assert_cached(
        &run(&redis_build, &[("CACHEKIT_REDIS_URL", &redis_url)]),
        with_redis,
        "redis",
    );
    assert_names_feature(
        &run(&redis_build, &[("CACHEKIT_BACKEND", "memcached")]),
        with_redis,
        "memcached",
    );
}
