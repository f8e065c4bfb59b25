//! The core conformance suite against real memcached: one server and three.

mod common;

use std::sync::Arc;

use cachekit_core::backend::testkit::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_conforms() {
    let servers = common::servers(1);
    conformance(Arc::new(common::backend(&servers, |_| {}))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_conform() {
    let servers = common::servers(3);
    conformance(Arc::new(common::backend(&servers, |_| {}))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_backend_conforms() {
    let servers = common::servers(1);
    conformance(Arc::new(common::backend(&servers, |c| {
        c.key_prefix = "myapp:".into()
    })))
    .await;
}
