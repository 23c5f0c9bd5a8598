//! Builds small synthetic PE32+ driver images in memory for tests.
//!
//! [`TestImage::driver`] is a well-formed image that passes every driver check; tests
//! change one field and assert that exactly the matching check fails.

use super::{
    DIR_BASERELOC, DIR_EXPORT, DIR_IMPORT, FILE_DLL, FILE_EXECUTABLE_IMAGE, FILE_LARGE_ADDRESS_AWARE, MACHINE_AMD64,
    MAGIC_PE32_PLUS, SCN_CNT_CODE, SCN_CNT_INITIALIZED_DATA, SCN_MEM_DISCARDABLE, SCN_MEM_EXECUTE, SCN_MEM_NOT_PAGED,
    SCN_MEM_READ, SCN_MEM_WRITE, SUBSYSTEM_NATIVE, stamp_checksum,
};

const PE_OFFSET: usize = 0x80;
const FILE_ALIGNMENT: usize = 0x200;
const SECTION_ALIGNMENT: u32 = 0x1000;
const SIZE_OF_HEADERS: usize = 0x400;
const OPTIONAL_HEADER_SIZE: usize = 240;

pub struct TestSection {
    pub name: &'static str,
    pub characteristics: u32,
    pub data: Vec<u8>,
    /// Mapped size when larger than `data` (zero-filled tail, as `.bss`).
    pub virtual_size: u32,
}

pub struct TestImage {
    pub machine: u16,
    pub subsystem: u16,
    pub file_characteristics: u16,
    pub timestamp: u32,
    pub image_base: u64,
    pub entry_point: u32,
    pub sections: Vec<TestSection>,
    /// `(dll, function)` pairs; each DLL gets one descriptor. Tables go into `.rdata`.
    pub imports: Vec<(String, String)>,
    /// Named exports; the table goes into `.rdata`.
    pub exports: Vec<(String, u32)>,
    /// Extra data directories `(index, rva, size)`, set after the generated ones.
    pub extra_directories: Vec<(usize, u32, u32)>,
}

impl TestImage {
    /// A minimal well-formed driver: sections laid out at 0x1000, 0x2000, ... in order.
    pub fn driver() -> Self {
        let ret = vec![0x31, 0xc0, 0xc3]; // xor eax, eax; ret
        Self {
            machine: MACHINE_AMD64,
            subsystem: SUBSYSTEM_NATIVE,
            file_characteristics: FILE_EXECUTABLE_IMAGE | FILE_LARGE_ADDRESS_AWARE | FILE_DLL,
            timestamp: 0x6b05_0648,
            image_base: 0x1_8000_0000,
            entry_point: 0x1000,
            sections: vec![
                section(".text", SCN_CNT_CODE | SCN_MEM_EXECUTE | SCN_MEM_READ | SCN_MEM_NOT_PAGED, ret),
                section(".rdata", SCN_CNT_INITIALIZED_DATA | SCN_MEM_READ | SCN_MEM_NOT_PAGED, Vec::new()),
                TestSection {
                    virtual_size: 0x28,
                    ..section(
                        ".data",
                        SCN_CNT_INITIALIZED_DATA | SCN_MEM_READ | SCN_MEM_WRITE | SCN_MEM_NOT_PAGED,
                        Vec::new(),
                    )
                },
                section(".pdata", SCN_CNT_INITIALIZED_DATA | SCN_MEM_READ | SCN_MEM_NOT_PAGED, vec![0; 12]),
                // One base relocation block for page 0x1000 with a single padding entry.
                section(
                    ".reloc",
                    SCN_CNT_INITIALIZED_DATA | SCN_MEM_READ | SCN_MEM_DISCARDABLE,
                    [0x1000u32.to_le_bytes(), 12u32.to_le_bytes(), [0; 4]].concat(),
                ),
            ],
            imports: vec![("ntoskrnl.exe".into(), "DbgPrint".into()), ("NETIO.SYS".into(), "WskRegister".into())],
            exports: vec![("DriverEntry".into(), 0x1000)],
            extra_directories: Vec::new(),
        }
    }

    pub fn section_mut(&mut self, name: &str) -> &mut TestSection {
        self.sections.iter_mut().find(|s| s.name == name).unwrap_or_else(|| panic!("no section {name}"))
    }

    /// The RVA at which section `index` is placed.
    pub fn section_rva(index: usize) -> u32 {
        SECTION_ALIGNMENT * (index as u32 + 1)
    }

    /// The image with a correct checksum.
    pub fn build(&self) -> Vec<u8> {
        let mut bytes = self.build_unstamped();
        stamp_checksum(&mut bytes).expect("test image parses");
        bytes
    }

    /// The image with `CheckSum` left at zero.
    pub fn build_unstamped(&self) -> Vec<u8> {
        let mut directories = [(0u32, 0u32); 16];
        let mut contents: Vec<Vec<u8>> = self.sections.iter().map(|s| s.data.clone()).collect();

        if let Some(rdata) = self.sections.iter().position(|s| s.name == ".rdata") {
            let base = Self::section_rva(rdata) + contents[rdata].len() as u32;
            let mut tables = Tables::new(base);
            if !self.imports.is_empty() {
                directories[DIR_IMPORT] = tables.imports(&self.imports);
            }
            if !self.exports.is_empty() {
                directories[DIR_EXPORT] = tables.exports(&self.exports);
            }
            contents[rdata].extend_from_slice(&tables.bytes);
        }
        if let Some(reloc) = self.sections.iter().position(|s| s.name == ".reloc") {
            directories[DIR_BASERELOC] = (Self::section_rva(reloc), contents[reloc].len() as u32);
        }
        for &(index, rva, size) in &self.extra_directories {
            directories[index] = (rva, size);
        }

        let mut out = vec![0u8; SIZE_OF_HEADERS];
        out[0..2].copy_from_slice(b"MZ");
        put32(&mut out, 0x3c, PE_OFFSET as u32);
        out[PE_OFFSET..PE_OFFSET + 4].copy_from_slice(b"PE\0\0");
        let coff = PE_OFFSET + 4;
        put16(&mut out, coff, self.machine);
        put16(&mut out, coff + 2, self.sections.len() as u16);
        put32(&mut out, coff + 4, self.timestamp);
        put16(&mut out, coff + 16, OPTIONAL_HEADER_SIZE as u16);
        put16(&mut out, coff + 18, self.file_characteristics);

        let opt = coff + 20;
        let last = self.sections.len().saturating_sub(1);
        let size_of_image = Self::section_rva(last) + SECTION_ALIGNMENT;
        put16(&mut out, opt, MAGIC_PE32_PLUS);
        put32(&mut out, opt + 16, self.entry_point);
        put32(&mut out, opt + 20, SECTION_ALIGNMENT);
        put64(&mut out, opt + 24, self.image_base);
        put32(&mut out, opt + 32, SECTION_ALIGNMENT);
        put32(&mut out, opt + 36, FILE_ALIGNMENT as u32);
        put16(&mut out, opt + 40, 6);
        put16(&mut out, opt + 48, 6);
        put32(&mut out, opt + 56, size_of_image);
        put32(&mut out, opt + 60, SIZE_OF_HEADERS as u32);
        put16(&mut out, opt + 68, self.subsystem);
        put16(&mut out, opt + 70, 0x160);
        put32(&mut out, opt + 108, 16);
        for (i, (rva, size)) in directories.iter().enumerate() {
            put32(&mut out, opt + 112 + 8 * i, *rva);
            put32(&mut out, opt + 116 + 8 * i, *size);
        }

        let table = opt + OPTIONAL_HEADER_SIZE;
        for (i, (s, data)) in self.sections.iter().zip(&contents).enumerate() {
            assert!(data.len() <= SECTION_ALIGNMENT as usize, "test section too large");
            let raw_size = data.len().next_multiple_of(FILE_ALIGNMENT);
            let raw_offset = if raw_size == 0 { 0 } else { out.len() };
            let at = table + 40 * i;
            let mut name = [0u8; 8];
            name[..s.name.len()].copy_from_slice(s.name.as_bytes());
            out[at..at + 8].copy_from_slice(&name);
            put32(&mut out, at + 8, s.virtual_size.max(data.len() as u32));
            put32(&mut out, at + 12, Self::section_rva(i));
            put32(&mut out, at + 16, raw_size as u32);
            put32(&mut out, at + 20, raw_offset as u32);
            put32(&mut out, at + 36, s.characteristics);
            out.extend_from_slice(data);
            out.resize(out.len().next_multiple_of(FILE_ALIGNMENT), 0);
        }
        out
    }
}

fn section(name: &'static str, characteristics: u32, data: Vec<u8>) -> TestSection {
    TestSection { name, characteristics, data, virtual_size: 0 }
}

fn put16(out: &mut [u8], at: usize, value: u16) {
    out[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut [u8], at: usize, value: u32) {
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put64(out: &mut [u8], at: usize, value: u64) {
    out[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Import and export tables laid out from RVA `base` onwards.
struct Tables {
    base: u32,
    bytes: Vec<u8>,
}

impl Tables {
    fn new(base: u32) -> Self {
        Self { base, bytes: Vec::new() }
    }

    /// Appends `data` aligned to `align`; returns its RVA.
    fn push(&mut self, data: &[u8], align: usize) -> u32 {
        self.bytes.resize(self.bytes.len().next_multiple_of(align), 0);
        let rva = self.base + self.bytes.len() as u32;
        self.bytes.extend_from_slice(data);
        rva
    }

    fn cstr(&mut self, text: &str) -> u32 {
        self.push(&[text.as_bytes(), b"\0"].concat(), 2)
    }

    fn imports(&mut self, imports: &[(String, String)]) -> (u32, u32) {
        let size = 20 * (imports.len() + 1);
        let descriptors = self.push(&vec![0; size], 4);
        for (i, (dll, function)) in imports.iter().enumerate() {
            let name = self.cstr(dll);
            let hint_name = self.push(&[&[0, 0], function.as_bytes(), b"\0"].concat(), 2);
            let thunks = [u64::from(hint_name).to_le_bytes(), [0; 8]].concat();
            let lookup = self.push(&thunks, 8);
            let address = self.push(&thunks, 8);
            let at = (descriptors - self.base) as usize + 20 * i;
            put32(&mut self.bytes, at, lookup);
            put32(&mut self.bytes, at + 12, name);
            put32(&mut self.bytes, at + 16, address);
        }
        (descriptors, size as u32)
    }

    fn exports(&mut self, exports: &[(String, u32)]) -> (u32, u32) {
        let directory = self.push(&[0; 40], 4);
        let dll_name = self.cstr("test.sys");
        let names: Vec<u32> = exports.iter().map(|(name, _)| self.cstr(name)).collect();
        let functions: Vec<u8> = exports.iter().flat_map(|(_, rva)| rva.to_le_bytes()).collect();
        let functions = self.push(&functions, 4);
        let name_table: Vec<u8> = names.iter().flat_map(|rva| rva.to_le_bytes()).collect();
        let name_table = self.push(&name_table, 4);
        let ordinals: Vec<u8> = (0..exports.len() as u16).flat_map(u16::to_le_bytes).collect();
        let ordinals = self.push(&ordinals, 2);
        let end = self.base + self.bytes.len() as u32;
        let at = (directory - self.base) as usize;
        let count = exports.len() as u32;
        put32(&mut self.bytes, at + 12, dll_name);
        put32(&mut self.bytes, at + 16, 1);
        put32(&mut self.bytes, at + 20, count);
        put32(&mut self.bytes, at + 24, count);
        put32(&mut self.bytes, at + 28, functions);
        put32(&mut self.bytes, at + 32, name_table);
        put32(&mut self.bytes, at + 36, ordinals);
        (directory, end - directory)
    }
}
