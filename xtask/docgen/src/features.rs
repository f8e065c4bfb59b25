//! The feature table of `README.md`, from the `## ` comments above each
//! feature in the facade's `[features]` (the `document-features`
//! convention, which the crate docs render from the same comments).

use toml_edit::{DocumentMut, Item};

use crate::markdown::{self, GENERATED, code};

/// The page that holds the table.
pub(crate) const README: &str = "README.md";

/// The line after the table, which ends the generated part.
const END: &str = "<!-- end of the generated part -->";

/// `readme` with the part between [`GENERATED`] and [`END`] replaced by
/// the table of the features `manifest` declares.
pub(crate) fn readme_with_table(readme: &str, manifest: &str) -> Result<String, String> {
    let missing = || {
        format!(
            "{README} lacks the markers of the feature table: a line `{GENERATED}`, then the table, then `{END}`"
        )
    };
    let start = readme.find(GENERATED).ok_or_else(missing)?;
    let end = readme[start..].find(END).ok_or_else(missing)? + start;
    Ok(format!(
        "{}{GENERATED}\n{}{}",
        &readme[..start],
        table(manifest)?,
        &readme[end..]
    ))
}

/// The table: each feature, whether it is on by default, and what it adds.
fn table(manifest: &str) -> Result<String, String> {
    let document: DocumentMut = manifest
        .parse()
        .map_err(|error| format!("Cargo.toml does not parse: {error}"))?;
    let features = document
        .get("features")
        .and_then(Item::as_table)
        .ok_or("Cargo.toml has no [features]")?;
    let defaults: Vec<String> = features
        .get("default")
        .and_then(Item::as_array)
        .map(|array| {
            array
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut rows = Vec::new();
    for (name, _) in features.iter().filter(|(name, _)| *name != "default") {
        let key = features.key(name).expect("an iterated key");
        let comment = key
            .leaf_decor()
            .prefix()
            .and_then(|raw| raw.as_str())
            .unwrap_or("");
        let doc: Vec<&str> = comment
            .lines()
            .filter_map(|line| line.trim().strip_prefix("##"))
            .map(str::trim)
            .collect();
        if doc.is_empty() {
            return Err(format!(
                "feature `{name}` has no `## ` comment in Cargo.toml: say what it adds"
            ));
        }
        let default = if defaults.iter().any(|d| d == name) {
            "yes"
        } else {
            "no"
        };
        rows.push(vec![code(name), default.into(), doc.join(" ")]);
    }
    Ok(markdown::table(&["feature", "default", "adds"], rows))
}
