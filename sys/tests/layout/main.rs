//! Layout check of every `#[repr(C)]` type of `wsk-sys` against the public C headers.
//!
//! [`table`] maps each Rust type to the C type it mirrors, the translation unit (TU) that declares
//! it and, per Rust field, the C member path. The test takes size, alignment, field offsets and
//! field sizes from the Rust compiler, writes them as `_Static_assert`s into one C file per TU and
//! compiles it with `clang -target x86_64-w64-mingw32 -fsyntax-only`. A failing assert names the
//! Rust type and field and the C member; the test then asks clang for the C values and reports
//! both sides.
//!
//! Translation units (preludes in `tests/layout/`):
//!
//! | TU            | headers                                                          | Debian package       |
//! |---------------|------------------------------------------------------------------|----------------------|
//! | mingw-kernel  | `ddk/ntddk.h`, `ddk/wdm.h`, `ntdef.h`                            | mingw-w64-x86-64-dev |
//! | mingw-winsock | `winsock2.h`, `ws2def.h`, `ws2ipdef.h`, `ws2tcpip.h`, `mswsock.h` | mingw-w64-x86-64-dev |
//! | wine-wsk      | Wine's `ddk/wsk.h` (mingw-w64 has none)                          | libwine-dev          |
//! | documented    | `layout/documented.h`, transcribed from Microsoft's documentation | mingw-w64-x86-64-dev |
//!
//! The documented TU covers the types neither header set declares: `WSK_EVENT_CALLBACK_CONTROL`,
//! `WSK_CLIENT_DATAGRAM_DISPATCH` and `WSK_CLIENT_STREAM_DISPATCH`.
//!
//! The check needs `clang` and the packages above; without them it fails (it never skips).
//!
//! The Rust values come from the host the test runs on. `wsk-sys` uses only fixed-width integers,
//! pointers and `usize`, so on any 64-bit little-endian target (the test asserts that it runs on
//! one) its layouts are those of `x86_64-pc-windows-msvc`.
//!
//! [`every_repr_c_type_is_in_the_table`] parses `src/*.rs` so that a new `#[repr(C)]` type or field
//! cannot escape the check, and [`one_byte_off_is_detected`] proves that a one-byte mistake fails it.
//!
//! Modules: [`table`] (the table's types and the macro that builds it), one module per header set
//! with its entries ([`mingw_kernel`], [`mingw_winsock`], [`wine_wsk`], [`documented`]),
//! [`clang`] (C generation and compilation) and [`scan`] (the source scan).

mod clang;
mod documented;
mod mingw_kernel;
mod mingw_winsock;
mod scan;
mod table;
mod wine_wsk;

use std::path::{Path, PathBuf};

use clang::{check_header, require_tools};
use scan::{repr_c_items, tokens};
use table::{Header, Type, table};

#[test]
fn layouts_match_public_headers() {
    require_tools();
    let table = table();
    for opaque in &table.opaque {
        assert_eq!(opaque.size, 0, "{} is listed as opaque ({}) but is not zero-sized", opaque.rust, opaque.reason);
    }
    let results: Vec<(Header, Result<usize, String>)> = std::thread::scope(|scope| {
        let table = &table;
        let handles: Vec<_> = Header::ALL
            .iter()
            .map(|&header| (header, scope.spawn(move || check_header(table, header, "layout"))))
            .collect();
        handles.into_iter().map(|(header, handle)| (header, handle.join().unwrap())).collect()
    });
    let mut failures = String::new();
    for (header, result) in results {
        match result {
            Ok(count) => {
                assert!(count > 0, "no checks for the {} translation unit", header.name());
                println!("{}: {count} checks passed", header.name());
            }
            Err(report) => failures.push_str(&report),
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

/// The same check with one value one byte off must fail and name the type and field: above all
/// `IO_STACK_LOCATION.Control` one byte further than in C. One mistake per translation unit: a
/// field offset, a size, an alignment and a field size.
#[test]
fn one_byte_off_is_detected() {
    require_tools();
    type Mistake = (Header, &'static str, Option<&'static str>, fn(&mut Type, Option<usize>));
    let mistakes: [Mistake; 4] = [
        (Header::MingwKernel, "IO_STACK_LOCATION", Some("Control"), |ty, field| {
            ty.fields[field.unwrap()].offset += 1;
        }),
        (Header::MingwWinsock, "SOCKADDR_IN6", None, |ty, _| ty.size += 1),
        (Header::WineWsk, "WSK_BUF", None, |ty, _| ty.align += 1),
        (Header::Documented, "WSK_EVENT_CALLBACK_CONTROL", Some("EventMask"), |ty, field| {
            let size = ty.fields[field.unwrap()].size.as_mut().unwrap();
            *size += 1;
        }),
    ];
    let results: Vec<Result<usize, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = mistakes
            .iter()
            .map(|&(header, type_name, field_name, spoil)| {
                scope.spawn(move || {
                    let mut table = table();
                    let ty = table.types.iter_mut().find(|ty| ty.rust == type_name).unwrap();
                    assert_eq!(ty.header, header);
                    let field = field_name.map(|name| ty.fields.iter().position(|f| f.rust == name).unwrap());
                    spoil(ty, field);
                    check_header(&table, header, &format!("one-byte-off-{type_name}"))
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    for ((_, type_name, field_name, _), result) in mistakes.iter().zip(results) {
        let report = result.expect_err("a one-byte mistake must fail the check");
        println!("---- induced failure: {type_name} {field_name:?} ----\n{report}");

        let errors: Vec<&str> = report.lines().filter(|line| line.contains(": error: ")).collect();
        assert_eq!(errors.len(), 1, "exactly one assert must fail:\n{report}");
        let named = match field_name {
            Some(field) => format!("{type_name}.{field}: "),
            None => format!("{type_name}: "),
        };
        assert!(errors[0].contains(&named), "the error must name `{named}`:\n{report}");
        let mismatches: Vec<&str> = report.lines().filter(|line| line.contains(": Rust 0x")).collect();
        assert_eq!(mismatches.len(), 1, "the report must show the one mismatch:\n{report}");
        assert!(mismatches[0].trim_start().starts_with(&named), "{report}");
    }
}

#[test]
fn every_repr_c_type_is_in_the_table() {
    let table = table();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();

    let mut items = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        items.extend(repr_c_items(&text).into_iter().map(|item| (name.clone(), item)));
    }
    assert!(items.iter().any(|(_, item)| item.name == "IRP"), "the source scan found no IRP");

    let mut problems = Vec::new();
    for (file, item) in &items {
        if let Some(ty) = table.types.iter().find(|ty| ty.rust == item.name) {
            for field in &item.fields {
                if !ty.fields.iter().any(|f| f.rust == field && f.size.is_some()) {
                    problems.push(format!("src/{file}: field {}.{field} has no entry in the layout table", item.name));
                }
            }
        } else if !table.opaque.iter().any(|opaque| opaque.rust == item.name) {
            problems.push(format!("src/{file}: #[repr(C)] {} {} is not in the layout table", item.kind, item.name));
        }
    }
    let names = table.types.iter().map(|ty| ty.rust).chain(table.opaque.iter().map(|opaque| opaque.rust));
    for (i, name) in names.clone().enumerate() {
        if !items.iter().any(|(_, item)| item.name == name) {
            problems.push(format!("the layout table lists {name}, which is no #[repr(C)] type in src/"));
        }
        if names.clone().take(i).any(|other| other == name) {
            problems.push(format!("the layout table lists {name} twice"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Host layouts equal `x86_64-pc-windows-msvc` layouts only while `sys` avoids the integer types
/// whose size or alignment differs between the two (`long` is 4 bytes on Windows, 8 on Linux).
#[test]
fn sys_uses_no_target_dependent_integers() {
    const FORBIDDEN: [&str; 4] = ["c_long", "c_ulong", "i128", "u128"];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for token in tokens(&text).iter().filter(|token| FORBIDDEN.contains(&token.as_str())) {
                found.push(format!("{}: {token}", path.display()));
            }
        }
    }
    assert!(found.is_empty(), "use fixed-width integers in sys (LONG = i32, ...):\n{}", found.join("\n"));
}
