//! The source scan: a small tokenizer for `src/*.rs` and the `#[repr(C)]` structs and unions it
//! finds, with their field names.

/// A `#[repr(C)]` / `#[repr(C, ...)]` struct or union found in Rust source.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReprCItem {
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) fields: Vec<String>,
}

/// Splits Rust source into identifiers, literals and single punctuation characters (`->` is one
/// token); comments are dropped.
pub(crate) fn tokens(source: &str) -> Vec<String> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(chars[start..i.min(chars.len())].iter().collect());
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(chars[start..i.min(chars.len())].iter().collect());
        } else if c.is_alphanumeric() || c == '_' || c == '\'' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == '-' && next == Some('>') {
            out.push("->".to_owned());
            i += 2;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// Index just past the bracket group that opens at `tokens[open]`.
pub(crate) fn skip_group(tokens: &[String], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced brackets in the source scan")
}

/// Skips outer attributes and a visibility (`pub`, `pub(crate)`, ...) starting at `i`.
pub(crate) fn skip_attributes_and_visibility(tokens: &[String], mut i: usize) -> usize {
    loop {
        if tokens[i] == "#" && tokens.get(i + 1).is_some_and(|t| t == "[") {
            i = skip_group(tokens, i + 1);
        } else if tokens[i] == "pub" {
            i += 1;
            if tokens[i] == "(" {
                i = skip_group(tokens, i);
            }
        } else {
            return i;
        }
    }
}

/// Every `#[repr(C)]` / `#[repr(C, ...)]` struct and union of `source`, with its field names.
pub(crate) fn repr_c_items(source: &str) -> Vec<ReprCItem> {
    let tokens = tokens(source);
    let mut items = Vec::new();
    let mut i = 0;
    while i + 3 < tokens.len() {
        if !(tokens[i] == "#" && tokens[i + 1] == "[" && tokens[i + 2] == "repr" && tokens[i + 3] == "(") {
            i += 1;
            continue;
        }
        let close = skip_group(&tokens, i + 3);
        let is_c = tokens[i + 4..close - 1].split(|t| t == ",").any(|arg| arg.len() == 1 && arg[0] == "C");
        i = skip_attributes_and_visibility(&tokens, skip_group(&tokens, i + 1));
        if !is_c {
            continue;
        }
        let kind = tokens[i].clone();
        assert!(
            kind == "struct" || kind == "union",
            "#[repr(C)] on a `{kind}`: the source scan reads structs and unions"
        );
        let name = tokens[i + 1].clone();
        assert_eq!(
            tokens[i + 2],
            "{",
            "#[repr(C)] {kind} {name}: the source scan reads braced structs without generics"
        );
        let end = skip_group(&tokens, i + 2) - 1;
        let mut fields = Vec::new();
        let mut j = i + 3;
        while j < end {
            j = skip_attributes_and_visibility(&tokens, j);
            if j >= end {
                break;
            }
            fields.push(tokens[j].clone());
            assert_eq!(tokens[j + 1], ":", "{kind} {name}: expected `:` after field {}", tokens[j]);
            let mut depth = 0usize;
            j += 2;
            while j < end && !(depth == 0 && tokens[j] == ",") {
                match tokens[j].as_str() {
                    "(" | "[" | "{" | "<" => depth += 1,
                    ")" | "]" | "}" | ">" => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            j += 1;
        }
        items.push(ReprCItem { kind, name, fields });
        i = end + 1;
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_scan_reads_structs_unions_and_fields() {
        let source = r#"
            /// Doc with a quote ' and "string" and #[repr(C)] in it.
            #[repr(C, align(2))]
            #[derive(Debug)]
            pub struct A {
                /// A field.
                pub first: Option<unsafe extern "system" fn(x: *mut u8, y: u32) -> i32>,
                pub(crate) second: [u8; 4], // trailing comment
                #[doc = "attr"]
                third: core::marker::PhantomData<(u8, u16)>
            }
            #[repr(u32)]
            enum NotC { X }
            #[repr(transparent)]
            struct NotC2(u8);
            #[repr(C)]
            union U { pub a: u64, pub b: [u16; 4] }
            /* #[repr(C)] struct InComment { x: u8 } */
            #[repr(C)]
            struct Opaque { _opaque: [u8; 0] }
        "#;
        let items = repr_c_items(source);
        let summary: Vec<(&str, &str, Vec<&str>)> = items
            .iter()
            .map(|item| (item.kind.as_str(), item.name.as_str(), item.fields.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            summary,
            [
                ("struct", "A", vec!["first", "second", "third"]),
                ("union", "U", vec!["a", "b"]),
                ("struct", "Opaque", vec!["_opaque"]),
            ]
        );
    }
}
