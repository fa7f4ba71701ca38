//! The README's section "Operating Aether: the `aether` CLI" is run as it stands: every
//! ```console block in it is a trycmd case (`$ aether …` lines, the output below them, `[..]`
//! and `...` for what varies), run against the example data (`support/fixture.rs`) in a data
//! directory `aether-data` and, for the blocks without `--data`, on a real nats-server holding
//! the same data and a one-node cluster `demo` (its URL in `AETHER_NATS`, shown as `[URL]`).
//! So the outputs shown in the README cannot drift from what the binary prints.

#[path = "support/fixture.rs"]
mod fixture;
#[path = "support/nats.rs"]
mod nats;

use std::path::Path;

/// The heading of the README section that is run.
const SECTION: &str = "## Operating Aether: the `aether` CLI";

/// The section, from its heading to the next `## ` heading.
fn section(readme: &str) -> &str {
    let start = readme
        .find(SECTION)
        .unwrap_or_else(|| panic!("README.md has no section {SECTION:?}"));
    let rest = &readme[start + SECTION.len()..];
    let end = rest
        .find("\n## ")
        .map_or(readme.len(), |at| start + SECTION.len() + at);
    &readme[start..end]
}

#[test]
fn the_readme_cli_examples_print_what_the_readme_shows() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md is readable");
    let section = section(&readme);
    assert!(
        section.matches("```console").count() >= 5,
        "the section shows the commands with their output"
    );

    let server = nats::server();
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("readme.md");
    std::fs::write(&case, section).unwrap();
    let node = runtime.block_on(async {
        fixture::write_data_dir(&dir.path().join("readme.in/aether-data")).await;
        nats::write_fixture(&url).await;
        let node = nats::start_node(&url, "demo", "node-1").await;
        nats::until("node-1 owns every shard", || {
            node.shard_map().is_some_and(|m| m.map.is_complete())
        })
        .await;
        node
    });

    trycmd::TestCases::new()
        .register_bin("aether", Path::new(env!("CARGO_BIN_EXE_aether")))
        .env("AETHER_NATS", url.clone())
        .insert_var("[URL]", url)
        .unwrap()
        .case(&case)
        .run();

    runtime.block_on(node.shutdown()).unwrap();
}
