//! The README's opening snippets are the crate documentation's examples, which compile as
//! doctests (`cargo test -p wsk --doc`): this test fails when the two drift apart.

use std::string::String;
use std::vec::Vec;

/// The code blocks fenced with `fence` in `text`, each as its lines joined with `\n`.
fn blocks(text: &str, fence: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        match current.as_mut() {
            None if line.trim_end() == fence => current = Some(Vec::new()),
            None => {}
            Some(lines) if line.trim_end() == "```" => {
                out.push(lines.join("\n"));
                current = None;
            }
            Some(lines) => lines.push(line),
        }
    }
    out
}

/// The `rust` blocks of the README before its first section heading.
fn readme_snippets(readme: &str) -> Vec<String> {
    let top = readme.split("\n## ").next().unwrap_or_default();
    blocks(top, "```rust")
}

/// The crate documentation's `no_run` examples (the `//!` lines of `lib.rs`), without their
/// hidden setup lines.
fn doc_snippets(lib: &str) -> Vec<String> {
    let docs: Vec<&str> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect();
    let docs = docs.join("\n");
    blocks(&docs, "```no_run")
        .into_iter()
        .map(|block| {
            block.lines().filter(|line| *line != "#" && !line.starts_with("# ")).collect::<Vec<_>>().join("\n")
        })
        .collect()
}

#[test]
fn the_readme_snippets_are_the_doctested_examples() {
    // Read at compile time (so the test also runs under Miri, which forbids file access).
    let readme = include_str!("../../README.md");
    let lib = include_str!("lib.rs");
    let (readme, docs) = (readme_snippets(readme), doc_snippets(lib));
    assert_eq!(readme.len(), 2, "the README opens with two rust snippets");
    assert_eq!(readme, docs, "README.md's opening snippets differ from the examples in wsk/src/lib.rs");
}

#[test]
fn snippets_are_found_and_hidden_lines_dropped() {
    let readme = "intro\n```rust\nlet a = 1;\n```\ntext\n```sh\nls\n```\n## Later\n```rust\nlater();\n```\n";
    assert_eq!(readme_snippets(readme), ["let a = 1;"]);
    let lib = "//! doc\n//!\n//! ```no_run\n//! # fn f() {\n//! let a = 1;\n//! #\n//! # }\n//! ```\n//! ```text\n//! x\n//! ```\nfn g() {}\n";
    assert_eq!(doc_snippets(lib), ["let a = 1;"]);
}
