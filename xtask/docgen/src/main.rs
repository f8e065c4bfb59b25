//! Writes the reference parts of cachekit's docs from the code's own
//! declarations, so they cannot drift from it:
//!
//! - `docs/backends.md` from each backend's `Capabilities` const, the core's
//!   table of what each operation does without a capability, and the
//!   registered backend factories;
//! - `docs/configuration.md` from the `Setting` declarations the config
//!   loader reads;
//! - the feature table of `README.md` from the `## ` comments of the
//!   facade's `[features]`.
//!
//! `docgen` writes them; `docgen --check` names each stale file and fails.
//! `cargo xtask docs [--check]` runs it, and a test of this crate checks
//! them in every `cargo test`.

mod backends;
mod configuration;
mod features;
mod markdown;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The command that rewrites the generated files, for messages.
const REGENERATE: &str = "cargo xtask docs";

/// One generated file: where it goes and what it holds.
struct Generated {
    /// Relative to the workspace root.
    path: &'static str,
    /// The whole file as it must be.
    contents: String,
}

/// The workspace root (this crate lives in `xtask/docgen`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("xtask/docgen has a grandparent")
        .to_path_buf()
}

/// Every generated file, from the files it reads under `root`.
fn generate(root: &Path) -> Result<Vec<Generated>, String> {
    let read = |path: &str| {
        fs::read_to_string(root.join(path)).map_err(|error| format!("reading {path}: {error}"))
    };
    let manifest = read("Cargo.toml")?;
    let readme = read(features::README)?;
    Ok(vec![
        Generated {
            path: backends::PATH,
            contents: backends::page(),
        },
        Generated {
            path: configuration::PATH,
            contents: configuration::page(),
        },
        Generated {
            path: features::README,
            contents: features::readme_with_table(&readme, &manifest)?,
        },
    ])
}

/// The generated files whose copy under `root` differs from what they must be.
fn stale(root: &Path) -> Result<Vec<&'static str>, String> {
    Ok(generate(root)?
        .into_iter()
        .filter(|file| fs::read_to_string(root.join(file.path)).ok() != Some(file.contents.clone()))
        .map(|file| file.path)
        .collect())
}

/// Writes every generated file that changed, and says which.
fn write(root: &Path) -> Result<(), String> {
    for file in generate(root)? {
        let path = root.join(file.path);
        if fs::read_to_string(&path).ok().as_deref() == Some(file.contents.as_str()) {
            println!("    {} is current", file.path);
            continue;
        }
        fs::write(&path, &file.contents)
            .map_err(|error| format!("writing {}: {error}", file.path))?;
        println!("    wrote {}", file.path);
    }
    Ok(())
}

/// The message for files that are not what the code says.
fn stale_message(paths: &[&str]) -> String {
    format!(
        "generated docs are out of date: {}. Run `{REGENERATE}` and commit the result",
        paths.join(", ")
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let outcome = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => write(&root),
        ["--check"] => stale(&root).and_then(|paths| match paths.as_slice() {
            [] => {
                println!("    generated docs are current");
                Ok(())
            }
            paths => Err(stale_message(paths)),
        }),
        _ => Err(format!("usage: docgen [--check] (got {args:?})")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An edited capability, setting or feature without regenerated docs
    /// fails `cargo test`, saying what to run.
    #[test]
    fn generated_docs_are_current() {
        let paths = stale(&workspace_root()).expect("the inputs are readable");
        assert!(paths.is_empty(), "{}", stale_message(&paths));
    }

    #[test]
    fn every_generated_page_says_it_is_generated() {
        for file in generate(&workspace_root()).expect("the inputs are readable") {
            assert!(
                file.contents.contains(markdown::GENERATED),
                "{} lacks the generated-file line",
                file.path
            );
        }
    }
}

/// Every page of `docs/` (and the README) is compiled as a doctest through
/// the facade's `src/doc_pages.rs`, so that no Rust block in the docs goes
/// unchecked; a new page must be added there.
#[cfg(test)]
mod doctested {
    use std::fs;
    use std::path::Path;

    use super::workspace_root;

    /// The Markdown files under `dir`, relative to the workspace root.
    fn pages(root: &Path, dir: &Path, found: &mut Vec<String>) {
        for entry in fs::read_dir(dir).expect("docs/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pages(root, &path, found);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                let relative = path.strip_prefix(root).expect("under the root");
                found.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_page_is_compiled_as_a_doctest() {
        let root = workspace_root();
        let included = fs::read_to_string(root.join("src/doc_pages.rs")).expect("src/doc_pages.rs");
        let mut found = vec!["README.md".to_string()];
        pages(&root, &root.join("docs"), &mut found);
        let missing: Vec<&String> = found
            .iter()
            .filter(|page| !included.contains(&format!("include_str!(\"../{page}\")")))
            .collect();
        assert!(
            missing.is_empty(),
            "pages whose Rust blocks no doctest compiles: {missing:?}; add each to src/doc_pages.rs"
        );
    }
}
