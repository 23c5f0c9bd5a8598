//! Checks that a linked `.sys` is a loadable, well-behaved kernel driver image.
//!
//! | rule                  | what must hold                                                    |
//! |-----------------------|-------------------------------------------------------------------|
//! | `pe-format`           | the file parses as a PE32+ image                                  |
//! | `machine`             | COFF machine is AMD64                                             |
//! | `subsystem`           | optional-header subsystem is NATIVE (1)                           |
//! | `entry-point`         | entry point is `DriverEntry`: equal to its export and/or link-map |
//! |                       | address (at least one source required), in non-discardable code   |
//! | `checksum`            | `CheckSum` is set and equals the recomputed image checksum        |
//! | `imports`             | only ntoskrnl.exe, NETIO.SYS, HAL.dll; no delay-load imports      |
//! | `no-write-execute`    | no section is both writable and executable                        |
//! | `data-not-executable` | only code sections are executable                                 |
//! | `writable-data`       | `.data`, `.bss` and uninitialized-data sections are writable      |
//! | `discardable`         | only `.reloc` is discardable, and holds nothing used at run time  |
//! | `non-paged`           | no `PAGE*` section; every kept section has `MEM_NOT_PAGED`        |
//! | `relocations`         | relocations not stripped (the kernel always rebases drivers)      |
//! | `work-item-tail-jump` | with a link map naming the executor's work item routine: the      |
//! |                       | routine reaches `KeSetEvent` by a jump, never by a call, so no    |
//! |                       | driver code runs after it sets the shutdown event                 |

use std::fmt;

use super::linkmap::LinkMap;
use super::{
    DIR_BASERELOC, DIR_DEBUG, DIR_DELAY_IMPORT, DIR_EXPORT, DIR_SECURITY, FILE_RELOCS_STRIPPED, Image, MACHINE_AMD64,
    SCN_CNT_CODE, SCN_CNT_UNINITIALIZED_DATA, SCN_MEM_DISCARDABLE, SCN_MEM_EXECUTE, SCN_MEM_NOT_PAGED, SCN_MEM_WRITE,
    SUBSYSTEM_NATIVE, Section, compute_checksum,
};

/// DLLs a driver built on this workspace may import from (compared case-insensitively).
pub const ALLOWED_IMPORTS: &[&str] = &["ntoskrnl.exe", "NETIO.SYS", "HAL.dll"];

/// The symbol the entry point must be.
pub const ENTRY_SYMBOL: &str = "DriverEntry";

/// Sections that may be discarded after load: they hold nothing the driver uses later.
const DISCARDABLE_ALLOWED: &[&str] = &[".reloc"];

/// Data directories whose contents may live in a discardable section.
const LOAD_TIME_ONLY_DIRECTORIES: &[usize] = &[DIR_BASERELOC, DIR_DEBUG];

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.rule, self.detail)
    }
}

/// Every rule `bytes` breaks; empty means the image passed. `map` is the link map
/// written for this image, if any.
pub fn check_driver_image(bytes: &[u8], map: Option<&LinkMap>) -> Vec<Violation> {
    let image = match Image::parse(bytes) {
        Ok(image) => image,
        Err(e) => {
            return vec![Violation { rule: "pe-format", detail: e.to_string() }];
        }
    };
    let mut out = Findings(Vec::new());
    check_headers(&image, &mut out);
    check_entry_point(&image, map, &mut out);
    check_checksum(&image, &mut out);
    check_imports(&image, &mut out);
    check_sections(&image, &mut out);
    if let Some(map) = map {
        check_work_item_routine(&image, map, &mut out);
    }
    out.0
}

/// The symbol of the executor's kernel work item routine (`executor/src/kernel/mod.rs`).
pub const WORK_ITEM_ROUTINE: &str = "wsk_executor_work_item_routine";

/// How a piece of x86-64 code reaches an import address table slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotUse {
    /// `jmp qword ptr [rip + slot]` and no call through it.
    JumpOnly,
    /// `call qword ptr [rip + slot]` somewhere.
    Call,
    /// Neither.
    None,
}

/// How `code`, found at `code_rva`, uses the slot at `slot_rva`: it looks for the RIP-relative
/// indirect `jmp` (`FF 25 disp32`) and `call` (`FF 15 disp32`) whose target is the slot, at
/// every byte offset (a stray match in another instruction's bytes can only add a finding).
pub fn slot_use(code: &[u8], code_rva: u32, slot_rva: u32) -> SlotUse {
    let (mut jump, mut call) = (false, false);
    for (at, w) in code.windows(6).enumerate() {
        if w[0] != 0xff || (w[1] != 0x25 && w[1] != 0x15) {
            continue;
        }
        let disp = i32::from_le_bytes([w[2], w[3], w[4], w[5]]);
        let next = code_rva.wrapping_add(at as u32 + 6);
        if next.wrapping_add_signed(disp) == slot_rva {
            if w[1] == 0x25 { jump = true } else { call = true }
        }
    }
    match (jump, call) {
        (_, true) => SlotUse::Call,
        (true, false) => SlotUse::JumpOnly,
        (false, false) => SlotUse::None,
    }
}

fn check_work_item_routine(image: &Image<'_>, map: &LinkMap, out: &mut Findings) {
    const RULE: &str = "work-item-tail-jump";
    let Some(routine) = map.symbols_named(WORK_ITEM_ROUTINE).next() else { return };
    let start = routine.address.wrapping_sub(map.load_address);
    // The routine ends where the next symbol starts (at most 256 bytes are read).
    let end = map
        .symbols
        .iter()
        .map(|s| s.address.wrapping_sub(map.load_address))
        .filter(|&a| a > start)
        .min()
        .unwrap_or(start + 256)
        .min(start + 256);
    let Ok(start) = u32::try_from(start) else {
        return out.add(RULE, format!("{WORK_ITEM_ROUTINE} at {start:#x} is outside the image"));
    };
    let code =
        image.rva_to_offset(start).ok().and_then(|at| image.bytes().get(at..at + (end as usize - start as usize)));
    let Some(code) = code else {
        return out.add(RULE, format!("{WORK_ITEM_ROUTINE} at {start:#x} is not backed by file data"));
    };
    match image.import_slot("KeSetEvent") {
        Err(e) => out.add(RULE, format!("import table unreadable: {e}")),
        Ok(None) => out.add(RULE, "the image has the executor's work item routine but does not import KeSetEvent"),
        Ok(Some(slot)) => match slot_use(code, start, slot) {
            SlotUse::JumpOnly => {}
            SlotUse::Call => out.add(
                RULE,
                format!("{WORK_ITEM_ROUTINE} calls KeSetEvent: driver code would run after the shutdown event is set"),
            ),
            SlotUse::None => out.add(RULE, format!("{WORK_ITEM_ROUTINE} does not jump to KeSetEvent")),
        },
    }
}

struct Findings(Vec<Violation>);

impl Findings {
    fn add(&mut self, rule: &'static str, detail: impl Into<String>) {
        self.0.push(Violation { rule, detail: detail.into() });
    }
}

fn check_headers(image: &Image<'_>, out: &mut Findings) {
    if image.machine != MACHINE_AMD64 {
        out.add("machine", format!("machine is {:#06x}, expected AMD64 ({MACHINE_AMD64:#06x})", image.machine));
    }
    if image.subsystem != SUBSYSTEM_NATIVE {
        out.add("subsystem", format!("subsystem is {}, expected NATIVE ({SUBSYSTEM_NATIVE})", image.subsystem));
    }
    if image.file_characteristics & FILE_RELOCS_STRIPPED != 0 {
        out.add("relocations", "IMAGE_FILE_RELOCS_STRIPPED is set; a driver must be relocatable");
    }
}

fn check_entry_point(image: &Image<'_>, map: Option<&LinkMap>, out: &mut Findings) {
    const RULE: &str = "entry-point";
    let entry = image.entry_point;
    if entry == 0 {
        out.add(RULE, "AddressOfEntryPoint is 0");
        return;
    }
    match image.section_at_rva(entry) {
        None => out.add(RULE, format!("entry point {entry:#x} is outside every section")),
        Some(s) if !s.has(SCN_CNT_CODE | SCN_MEM_EXECUTE) || s.has(SCN_MEM_DISCARDABLE) => {
            out.add(RULE, format!("entry point {entry:#x} is in {}, not in kept executable code", s.name));
        }
        Some(_) => {}
    }

    let mut sources = 0;
    match image.exports() {
        Err(e) => out.add(RULE, format!("export table unreadable: {e}")),
        Ok(exports) => {
            for export in exports.iter().filter(|e| e.name == ENTRY_SYMBOL) {
                sources += 1;
                if export.rva != entry {
                    out.add(
                        RULE,
                        format!("entry point {entry:#x} differs from exported {ENTRY_SYMBOL} at {:#x}", export.rva),
                    );
                }
            }
        }
    }
    if let Some(map) = map {
        sources += 1;
        check_entry_against_map(image, map, out);
    }
    if sources == 0 {
        out.add(
            RULE,
            format!(
                "cannot tell whether the entry point is {ENTRY_SYMBOL}: it is not exported and no link map was given"
            ),
        );
    }
}

fn check_entry_against_map(image: &Image<'_>, map: &LinkMap, out: &mut Findings) {
    const RULE: &str = "entry-point";
    if map.timestamp != image.timestamp || map.load_address != image.image_base {
        out.add(
            RULE,
            format!(
                "link map describes another link (timestamp {:#x}, base {:#x}; image has {:#x}, {:#x})",
                map.timestamp, map.load_address, image.timestamp, image.image_base
            ),
        );
        return;
    }
    let entry = u64::from(image.entry_point);
    let symbols: Vec<_> = map.symbols_named(ENTRY_SYMBOL).collect();
    match symbols.as_slice() {
        [] => out.add(RULE, format!("link map has no symbol {ENTRY_SYMBOL}")),
        [symbol] => {
            let rva = symbol.address.wrapping_sub(map.load_address);
            if rva != entry {
                out.add(
                    RULE,
                    format!("entry point {entry:#x} differs from {ENTRY_SYMBOL} at {rva:#x} in the link map"),
                );
            }
        }
        _ => out.add(RULE, format!("link map has {} symbols named {ENTRY_SYMBOL}", symbols.len())),
    }
    match map.entry {
        None => out.add(RULE, "link map has no `entry point at` line"),
        Some((section, offset)) => {
            let mapped = usize::from(section)
                .checked_sub(1)
                .and_then(|i| image.sections.get(i))
                .map(|s| u64::from(s.virtual_address) + u64::from(offset));
            if mapped != Some(entry) {
                out.add(
                    RULE,
                    format!("link map puts the entry point at {section:04x}:{offset:08x}, image has {entry:#x}"),
                );
            }
        }
    }
}

fn check_checksum(image: &Image<'_>, out: &mut Findings) {
    let computed = compute_checksum(image.bytes(), image.checksum_offset);
    if image.checksum == 0 {
        out.add("checksum", format!("CheckSum is 0 (should be {computed:#010x})"));
    } else if image.checksum != computed {
        out.add("checksum", format!("CheckSum is {:#010x}, computed {computed:#010x}", image.checksum));
    }
}

fn check_imports(image: &Image<'_>, out: &mut Findings) {
    match image.imported_dlls() {
        Err(e) => out.add("imports", format!("import table unreadable: {e}")),
        Ok(dlls) => {
            for dll in dlls {
                if !ALLOWED_IMPORTS.iter().any(|ok| ok.eq_ignore_ascii_case(&dll)) {
                    out.add("imports", format!("imports from {dll}; allowed: {}", ALLOWED_IMPORTS.join(", ")));
                }
            }
        }
    }
    if image.directory(DIR_DELAY_IMPORT).is_present() {
        out.add("imports", "has delay-load imports; the kernel loader does not support them");
    }
}

fn check_sections(image: &Image<'_>, out: &mut Findings) {
    for s in &image.sections {
        let name = &s.name;
        if s.has(SCN_MEM_WRITE) && s.has(SCN_MEM_EXECUTE) {
            out.add("no-write-execute", format!("section {name} is writable and executable"));
        }
        if s.has(SCN_MEM_EXECUTE) && !s.has(SCN_CNT_CODE) {
            out.add("data-not-executable", format!("data section {name} is executable"));
        }
        let holds_writable_data = name == ".data" || name == ".bss" || s.has(SCN_CNT_UNINITIALIZED_DATA);
        if holds_writable_data && !s.has(SCN_MEM_WRITE) {
            out.add("writable-data", format!("section {name} holds writable data but is read-only"));
        }
        if s.has(SCN_MEM_DISCARDABLE) {
            check_discardable(image, s, out);
        } else {
            if name.to_ascii_uppercase().starts_with("PAGE") {
                out.add("non-paged", format!("section {name} is pageable by name"));
            }
            if !s.has(SCN_MEM_NOT_PAGED) {
                out.add(
                    "non-paged",
                    format!("section {name} lacks IMAGE_SCN_MEM_NOT_PAGED (link with /SECTION:{name},P...)"),
                );
            }
        }
    }
}

fn check_discardable(image: &Image<'_>, s: &Section, out: &mut Findings) {
    if !DISCARDABLE_ALLOWED.contains(&s.name.as_str()) {
        out.add("discardable", format!("section {} is discardable", s.name));
    }
    for (index, dir) in image.directories.iter().enumerate() {
        let used_later = !LOAD_TIME_ONLY_DIRECTORIES.contains(&index) && index != DIR_SECURITY;
        if used_later && dir.is_present() && s.contains_rva(dir.rva) {
            let what = if index == DIR_EXPORT { " (exports)" } else { "" };
            out.add("discardable", format!("data directory {index}{what} lies in discardable section {}", s.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::DIR_DELAY_IMPORT;
    use super::super::linkmap::{LinkMap, SAMPLE};
    use super::super::testimage::TestImage;
    use super::*;

    /// The rules broken by `image`, checked without a link map.
    fn broken(image: &TestImage) -> Vec<&'static str> {
        broken_bytes(&image.build(), None)
    }

    fn broken_bytes(bytes: &[u8], map: Option<&LinkMap>) -> Vec<&'static str> {
        let mut rules: Vec<_> = check_driver_image(bytes, map).iter().map(|v| v.rule).collect();
        rules.dedup();
        rules
    }

    #[test]
    fn well_formed_driver_passes() {
        let violations = check_driver_image(&TestImage::driver().build(), None);
        assert!(violations.is_empty(), "{violations:?}");
    }

    /// The bytes of the routine as built (`sub rsp, 40; call body; test; jz; mov; xor; xor;
    /// add rsp, 40; jmp [rip + slot]; add rsp, 40; ret`), at RVA 0x261a0, slot at 0x31700.
    const ROUTINE: [u8; 37] = [
        0x48, 0x83, 0xec, 0x28, 0xe8, 0xc7, 0x03, 0x00, 0x00, 0x48, 0x85, 0xc0, 0x74, 0x12, 0x48, 0x89, 0xc1, 0x31,
        0xd2, 0x45, 0x31, 0xc0, 0x48, 0x83, 0xc4, 0x28, 0xff, 0x25, 0x40, 0xb5, 0x00, 0x00, 0x48, 0x83, 0xc4, 0x28,
        0xc3,
    ];

    #[test]
    fn a_tail_jump_through_the_slot_is_found() {
        assert_eq!(slot_use(&ROUTINE, 0x261a0, 0x31700), SlotUse::JumpOnly);
        // Another slot: neither.
        assert_eq!(slot_use(&ROUTINE, 0x261a0, 0x31708), SlotUse::None);
    }

    #[test]
    fn a_call_through_the_slot_is_found() {
        let mut code = ROUTINE;
        // The same instruction as a call (`FF 15`): what the routine must not do.
        code[27] = 0x15;
        assert_eq!(slot_use(&code, 0x261a0, 0x31700), SlotUse::Call);
    }

    #[test]
    fn well_formed_driver_passes_with_link_map() {
        let map = LinkMap::parse(SAMPLE).unwrap();
        let mut image = TestImage::driver();
        image.exports.clear();
        let violations = check_driver_image(&image.build(), Some(&map));
        assert!(violations.is_empty(), "{violations:?}");
    }

    #[test]
    fn unparsable_file_fails() {
        assert_eq!(broken_bytes(b"not a driver", None), ["pe-format"]);
    }

    #[test]
    fn wrong_machine_fails() {
        let mut image = TestImage::driver();
        image.machine = 0x014c; // i386
        assert_eq!(broken(&image), ["machine"]);
    }

    #[test]
    fn wrong_subsystem_fails() {
        let mut image = TestImage::driver();
        image.subsystem = 3; // WINDOWS_CUI
        assert_eq!(broken(&image), ["subsystem"]);
    }

    #[test]
    fn missing_checksum_fails() {
        assert_eq!(broken_bytes(&TestImage::driver().build_unstamped(), None), ["checksum"]);
    }

    #[test]
    fn corrupted_checksum_fails() {
        let mut bytes = TestImage::driver().build();
        bytes[0x400] ^= 0x01; // first byte of .text
        assert_eq!(broken_bytes(&bytes, None), ["checksum"]);
    }

    #[test]
    fn foreign_import_fails() {
        let mut image = TestImage::driver();
        image.imports.push(("KERNEL32.dll".into(), "Sleep".into()));
        let violations = check_driver_image(&image.build(), None);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].rule, "imports");
        assert!(violations[0].detail.contains("KERNEL32.dll"));
    }

    #[test]
    fn allowed_imports_match_case_insensitively() {
        let mut image = TestImage::driver();
        image.imports = vec![
            ("NTOSKRNL.EXE".into(), "DbgPrint".into()),
            ("netio.sys".into(), "WskRegister".into()),
            ("hal.DLL".into(), "KeStallExecutionProcessor".into()),
        ];
        assert!(broken(&image).is_empty());
    }

    #[test]
    fn delay_imports_fail() {
        let mut image = TestImage::driver();
        image.extra_directories.push((DIR_DELAY_IMPORT, 0x2000, 32));
        assert_eq!(broken(&image), ["imports"]);
    }

    #[test]
    fn writable_code_fails() {
        let mut image = TestImage::driver();
        image.section_mut(".text").characteristics |= SCN_MEM_WRITE;
        assert_eq!(broken(&image), ["no-write-execute"]);
    }

    #[test]
    fn executable_data_fails() {
        let mut image = TestImage::driver();
        image.section_mut(".rdata").characteristics |= SCN_MEM_EXECUTE;
        assert_eq!(broken(&image), ["data-not-executable"]);
        // `.data` turned W+X breaks both rules.
        let mut image = TestImage::driver();
        image.section_mut(".data").characteristics |= SCN_MEM_EXECUTE;
        assert_eq!(broken(&image), ["no-write-execute", "data-not-executable"]);
    }

    #[test]
    fn read_only_data_section_fails() {
        let mut image = TestImage::driver();
        image.section_mut(".data").characteristics &= !SCN_MEM_WRITE;
        assert_eq!(broken(&image), ["writable-data"]);
    }

    #[test]
    fn discardable_runtime_section_fails() {
        let mut image = TestImage::driver();
        image.section_mut(".pdata").characteristics |= SCN_MEM_DISCARDABLE;
        assert_eq!(broken(&image), ["discardable"]);
    }

    #[test]
    fn tables_in_discardable_section_fail() {
        // Import and export tables live in .rdata; discarding it must name them.
        let mut image = TestImage::driver();
        image.section_mut(".rdata").characteristics |= SCN_MEM_DISCARDABLE;
        let details: Vec<String> = check_driver_image(&image.build(), None)
            .into_iter()
            .map(|v| {
                assert_eq!(v.rule, "discardable");
                v.detail
            })
            .collect();
        assert!(details.iter().any(|d| d.contains("directory 1")), "{details:?}");
        assert!(details.iter().any(|d| d.contains("(exports)")), "{details:?}");
    }

    #[test]
    fn pageable_sections_fail() {
        let mut image = TestImage::driver();
        image.section_mut(".rdata").characteristics &= !SCN_MEM_NOT_PAGED;
        assert_eq!(broken(&image), ["non-paged"]);
        let mut image = TestImage::driver();
        image.section_mut(".pdata").name = "PAGE";
        assert_eq!(broken(&image), ["non-paged"]);
    }

    #[test]
    fn stripped_relocations_fail() {
        let mut image = TestImage::driver();
        image.file_characteristics |= FILE_RELOCS_STRIPPED;
        assert_eq!(broken(&image), ["relocations"]);
    }

    #[test]
    fn entry_point_not_driver_entry_fails() {
        let mut image = TestImage::driver();
        image.entry_point = 0x1001;
        assert_eq!(broken(&image), ["entry-point"]);
    }

    #[test]
    fn entry_point_outside_code_fails() {
        let mut image = TestImage::driver();
        image.entry_point = TestImage::section_rva(1); // .rdata
        image.exports = vec![("DriverEntry".into(), image.entry_point)];
        assert_eq!(broken(&image), ["entry-point"]);
        image.entry_point = 0;
        assert_eq!(broken(&image), ["entry-point"]);
        image.entry_point = 0x9000; // past the last section
        assert_eq!(broken(&image), ["entry-point"]);
    }

    #[test]
    fn entry_point_unverifiable_without_export_or_map_fails() {
        let mut image = TestImage::driver();
        image.exports = vec![("SomethingElse".into(), 0x1000)];
        let violations = check_driver_image(&image.build(), None);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].detail.contains("no link map"), "{violations:?}");
    }

    #[test]
    fn link_map_disagreeing_with_entry_fails() {
        let mut image = TestImage::driver();
        image.exports.clear();
        image.entry_point = 0x1002;
        let map = LinkMap::parse(SAMPLE).unwrap();
        assert_eq!(broken_bytes(&image.build(), Some(&map)), ["entry-point"]);
    }

    #[test]
    fn link_map_of_another_link_fails() {
        let mut image = TestImage::driver();
        image.timestamp += 1;
        let map = LinkMap::parse(SAMPLE).unwrap();
        let violations = check_driver_image(&image.build(), Some(&map));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].detail.contains("another link"), "{violations:?}");
    }
}
