//! The documentation holds together: the README is short and links every page of `docs/`,
//! every relative link leads to a file of the repository, and the connector reference is the
//! one the code generates (`weir connectors --markdown`), not a second hand-kept copy.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages
}

/// The targets of `[text](target)` links in Markdown, code blocks left out.
fn links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        for (i, _) in line.match_indices("](") {
            let rest = &line[i + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_string());
            }
        }
    }
    out
}

#[test]
fn the_readme_is_short_and_links_every_page() {
    let readme = read(&root().join("README.md"));
    assert!(readme.len() < 8 * 1024, "README.md is {} bytes: keep it under 8 KB, the rest goes to docs/", readme.len());
    let linked = links(&readme);
    for page in pages() {
        let name = format!("docs/{}", page.file_name().unwrap().to_string_lossy());
        assert!(linked.iter().any(|l| l.split('#').next() == Some(name.as_str())), "README.md does not link {name}");
    }
    for section in ["cargo test --workspace", "cargo run -- run sql-examples/"] {
        assert!(readme.contains(section), "README.md lost the command `{section}`");
    }
}

#[test]
fn relative_links_lead_to_files_of_the_repository() {
    let repo = root().canonicalize().unwrap();
    let mut files = vec![root().join("README.md")];
    files.extend(pages());
    for file in files {
        for link in links(&read(&file)) {
            if link.contains("://") || link.starts_with('#') || link.starts_with("mailto:") {
                continue;
            }
            let path = link.split('#').next().unwrap_or_default();
            let target = file.parent().unwrap().join(path);
            let resolved = target
                .canonicalize()
                .unwrap_or_else(|e| panic!("{}: the link '{link}' leads nowhere ({e})", file.display()));
            assert!(resolved.starts_with(&repo), "{}: the link '{link}' leaves the repository", file.display());
        }
    }
}

const BEGIN: &str = "<!-- BEGIN GENERATED: connector options -->\n";
const END: &str = "<!-- END GENERATED: connector options -->";

#[test]
fn the_connector_reference_is_generated_from_the_declarations() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir")).args(["connectors", "--markdown"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let generated = String::from_utf8(out.stdout).unwrap();
    for name in ["### `file`", "### `stdin`", "### `datagen`", "### `nexmark`", "### `channel`", "`path`"] {
        assert!(generated.contains(name), "the generated reference lacks {name}");
    }
    let page = read(&root().join("docs/connectors.md"));
    let start = page.find(BEGIN).expect("docs/connectors.md has the BEGIN GENERATED marker") + BEGIN.len();
    let end = page.find(END).expect("docs/connectors.md has the END GENERATED marker");
    if page[start..end] != generated {
        if std::env::var_os("WEIR_UPDATE_DOCS").is_some() {
            let updated = format!("{}{generated}{}", &page[..start], &page[end..]);
            std::fs::write(root().join("docs/connectors.md"), updated).unwrap();
        } else {
            panic!(
                "docs/connectors.md is not what the connectors declare: run \
                 `WEIR_UPDATE_DOCS=1 cargo test --test docs` to regenerate it"
            );
        }
    }
}

#[test]
fn the_architecture_page_names_every_crate() {
    let page = read(&root().join("docs/architecture.md"));
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(page.contains(&name), "docs/architecture.md does not mention {name}");
    }
}
