//! The layering the module docs draw, checked on the sources: each module imports only from
//! its own row or the rows below it, and the leaves import no other module of the provider.

/// The rows of the module docs, bottom first.
const ROWS: &[&[&str]] = &[
    &["addr", "status", "blocks", "registration"],
    &["model"],
    &["buf", "resolve"],
    &[
        "tables",
        "socket",
        "queue",
        "io",
        "events",
        "deliver",
        "indication",
        "inspect",
        "options",
        "reactor",
        "processors",
        "loopback",
    ],
    &["dispatch"],
];

/// Every module's source, without its unit tests.
const SOURCES: &[(&str, &str)] = &[
    ("addr", include_str!("addr.rs")),
    ("blocks", include_str!("blocks.rs")),
    ("buf", include_str!("buf.rs")),
    ("deliver", include_str!("deliver.rs")),
    ("dispatch", include_str!("dispatch.rs")),
    ("events", include_str!("events.rs")),
    ("indication", include_str!("indication.rs")),
    ("inspect", include_str!("inspect.rs")),
    ("io", include_str!("io.rs")),
    ("loopback", include_str!("loopback.rs")),
    ("model", include_str!("model.rs")),
    ("options", include_str!("options.rs")),
    ("processors", include_str!("processors.rs")),
    ("queue", include_str!("queue.rs")),
    ("reactor", include_str!("reactor.rs")),
    ("registration", include_str!("registration.rs")),
    ("resolve", include_str!("resolve.rs")),
    ("socket", include_str!("socket.rs")),
    ("status", include_str!("status.rs")),
    ("tables", include_str!("tables.rs")),
];

fn row_of(module: &str) -> usize {
    ROWS.iter().position(|row| row.contains(&module)).unwrap_or_else(|| panic!("module `{module}` is in no row"))
}

/// The sibling modules `source` names through `super::` (in `use` lists or paths), outside
/// comments and unit tests.
fn siblings(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = Vec::new();
    for line in code.lines().map(|line| line.split("//").next().unwrap_or_default()) {
        for (at, _) in line.match_indices("super::") {
            let rest = &line[at + "super::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(list) => list.split('}').next().unwrap_or_default().split(',').collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String = name.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if SOURCES.iter().any(|(module, _)| *module == name) {
                    found.push(name);
                }
            }
        }
    }
    found
}

#[test]
fn every_module_is_in_one_row() {
    let rowed: usize = ROWS.iter().map(|row| row.len()).sum();
    assert_eq!(rowed, SOURCES.len());
    for (module, _) in SOURCES {
        row_of(module);
    }
}

#[test]
fn modules_import_only_from_their_row_or_below() {
    for (module, source) in SOURCES {
        for sibling in siblings(source) {
            assert!(
                row_of(&sibling) <= row_of(module),
                "`{module}` (row {}) imports `{sibling}` (row {})",
                row_of(module),
                row_of(&sibling)
            );
            if row_of(module) == 0 {
                panic!("the leaf `{module}` imports `{sibling}`");
            }
        }
    }
}

#[test]
fn the_scanner_sees_imports() {
    assert_eq!(
        siblings("use super::model::{Irp, Kind};\nuse super::{reactor, status};"),
        ["model", "reactor", "status"]
    );
    assert_eq!(siblings("let x = super::tables::dispatch_for(kind); // super::queue"), ["tables"]);
    assert!(siblings("// use super::queue;\n").is_empty());
}
