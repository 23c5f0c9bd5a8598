//! A small reader for PE32+ images: headers, section table, imports, exports, and the
//! optional-header checksum. Only what the driver image checks need.
//!
//! Offsets and field meanings follow Microsoft's "PE Format" specification.

pub mod checks;
pub mod linkmap;
#[cfg(test)]
pub mod testimage;

use std::fmt;

pub const MACHINE_AMD64: u16 = 0x8664;
pub const SUBSYSTEM_NATIVE: u16 = 1;
pub const MAGIC_PE32_PLUS: u16 = 0x20b;

pub const FILE_RELOCS_STRIPPED: u16 = 0x0001;
pub const FILE_EXECUTABLE_IMAGE: u16 = 0x0002;
pub const FILE_LARGE_ADDRESS_AWARE: u16 = 0x0020;
pub const FILE_DLL: u16 = 0x2000;

pub const SCN_CNT_CODE: u32 = 0x0000_0020;
pub const SCN_CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
pub const SCN_CNT_UNINITIALIZED_DATA: u32 = 0x0000_0080;
pub const SCN_MEM_DISCARDABLE: u32 = 0x0200_0000;
pub const SCN_MEM_NOT_PAGED: u32 = 0x0800_0000;
pub const SCN_MEM_EXECUTE: u32 = 0x2000_0000;
pub const SCN_MEM_READ: u32 = 0x4000_0000;
pub const SCN_MEM_WRITE: u32 = 0x8000_0000;

/// Data directory indices.
pub const DIR_EXPORT: usize = 0;
pub const DIR_IMPORT: usize = 1;
pub const DIR_SECURITY: usize = 4;
pub const DIR_BASERELOC: usize = 5;
pub const DIR_DEBUG: usize = 6;
pub const DIR_DELAY_IMPORT: usize = 13;

/// Offset of the PE signature pointer in the DOS header.
const DOS_E_LFANEW: usize = 0x3c;
/// Size of the COFF file header that follows the `PE\0\0` signature.
const COFF_HEADER_SIZE: usize = 20;
/// Offset of `CheckSum` within the optional header (same for PE32 and PE32+).
const OPT_CHECKSUM: usize = 64;
/// Offset of the first data directory within a PE32+ optional header.
const OPT64_DATA_DIRECTORIES: usize = 112;
const SECTION_HEADER_SIZE: usize = 40;
const IMPORT_DESCRIPTOR_SIZE: usize = 20;
/// Upper bound on table entries we walk, so corrupt counts cannot make us spin.
const MAX_TABLE_ENTRIES: usize = 65_536;

/// Why bytes could not be read as a PE32+ image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

fn malformed<T>(what: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(what.into()))
}

/// Little-endian reads that fail instead of panicking on short input.
trait ReadLe {
    fn bytes_at(&self, offset: usize, len: usize) -> Result<&[u8], ParseError>;

    fn u16_at(&self, offset: usize) -> Result<u16, ParseError> {
        let b = self.bytes_at(offset, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32_at(&self, offset: usize) -> Result<u32, ParseError> {
        let b = self.bytes_at(offset, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64_at(&self, offset: usize) -> Result<u64, ParseError> {
        let b = self.bytes_at(offset, 8)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(b);
        Ok(u64::from_le_bytes(raw))
    }
}

impl ReadLe for [u8] {
    fn bytes_at(&self, offset: usize, len: usize) -> Result<&[u8], ParseError> {
        offset.checked_add(len).and_then(|end| self.get(offset..end)).map_or_else(
            || malformed(format!("file too short: need {len} bytes at offset {offset:#x}, file has {:#x}", self.len())),
            Ok,
        )
    }
}

/// One entry of the section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub virtual_address: u32,
    pub virtual_size: u32,
    pub raw_offset: u32,
    pub raw_size: u32,
    pub characteristics: u32,
}

impl Section {
    pub fn has(&self, flag: u32) -> bool {
        self.characteristics & flag == flag
    }

    /// Whether `rva` falls inside this section once mapped.
    pub fn contains_rva(&self, rva: u32) -> bool {
        let size = self.virtual_size.max(self.raw_size);
        rva >= self.virtual_address && u64::from(rva) < u64::from(self.virtual_address) + u64::from(size)
    }
}

/// An RVA and size from the optional header's data directory array.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataDirectory {
    pub rva: u32,
    pub size: u32,
}

impl DataDirectory {
    pub fn is_present(&self) -> bool {
        self.rva != 0 || self.size != 0
    }
}

/// An exported symbol: name and RVA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub name: String,
    pub rva: u32,
}

/// A parsed PE32+ image borrowing the file bytes.
#[derive(Debug)]
pub struct Image<'a> {
    bytes: &'a [u8],
    pub machine: u16,
    pub file_characteristics: u16,
    pub timestamp: u32,
    pub entry_point: u32,
    pub image_base: u64,
    pub size_of_headers: u32,
    pub checksum: u32,
    /// File offset of the optional header's `CheckSum` field.
    pub checksum_offset: usize,
    pub subsystem: u16,
    pub directories: Vec<DataDirectory>,
    pub sections: Vec<Section>,
}

impl<'a> Image<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.bytes_at(0, 2)? != b"MZ" {
            return malformed("no MZ signature: not a PE image");
        }
        let pe = bytes.u32_at(DOS_E_LFANEW)? as usize;
        if bytes.bytes_at(pe, 4)? != b"PE\0\0" {
            return malformed(format!("no PE signature at offset {pe:#x}"));
        }
        let coff = pe + 4;
        let machine = bytes.u16_at(coff)?;
        let section_count = usize::from(bytes.u16_at(coff + 2)?);
        let timestamp = bytes.u32_at(coff + 4)?;
        let optional_size = usize::from(bytes.u16_at(coff + 16)?);
        let file_characteristics = bytes.u16_at(coff + 18)?;

        let opt = coff + COFF_HEADER_SIZE;
        let magic = bytes.u16_at(opt)?;
        if magic != MAGIC_PE32_PLUS {
            return malformed(format!("optional header magic is {magic:#x}, expected {MAGIC_PE32_PLUS:#x} (PE32+)"));
        }
        if optional_size < OPT64_DATA_DIRECTORIES {
            return malformed(format!("optional header too small ({optional_size} bytes)"));
        }
        let entry_point = bytes.u32_at(opt + 16)?;
        let image_base = bytes.u64_at(opt + 24)?;
        let size_of_headers = bytes.u32_at(opt + 60)?;
        let checksum_offset = opt + OPT_CHECKSUM;
        let checksum = bytes.u32_at(checksum_offset)?;
        let subsystem = bytes.u16_at(opt + 68)?;
        let dir_count = bytes.u32_at(opt + 108)? as usize;
        let dir_room = (optional_size - OPT64_DATA_DIRECTORIES) / 8;
        if dir_count > dir_room {
            return malformed(format!(
                "{dir_count} data directories do not fit in a {optional_size}-byte optional header"
            ));
        }
        let directories = (0..dir_count)
            .map(|i| {
                let at = opt + OPT64_DATA_DIRECTORIES + 8 * i;
                Ok(DataDirectory { rva: bytes.u32_at(at)?, size: bytes.u32_at(at + 4)? })
            })
            .collect::<Result<Vec<_>, ParseError>>()?;

        let table = opt + optional_size;
        let sections = (0..section_count)
            .map(|i| parse_section(bytes, table + SECTION_HEADER_SIZE * i))
            .collect::<Result<Vec<_>, ParseError>>()?;

        Ok(Self {
            bytes,
            machine,
            file_characteristics,
            timestamp,
            entry_point,
            image_base,
            size_of_headers,
            checksum,
            checksum_offset,
            subsystem,
            directories,
            sections,
        })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// A data directory, or an empty one if the image has fewer directories.
    pub fn directory(&self, index: usize) -> DataDirectory {
        self.directories.get(index).copied().unwrap_or_default()
    }

    /// The section whose mapped range holds `rva`.
    pub fn section_at_rva(&self, rva: u32) -> Option<&Section> {
        self.sections.iter().find(|s| s.contains_rva(rva))
    }

    /// The file offset holding the byte mapped at `rva`.
    pub fn rva_to_offset(&self, rva: u32) -> Result<usize, ParseError> {
        if rva < self.size_of_headers {
            return Ok(rva as usize);
        }
        for s in &self.sections {
            let delta = rva.wrapping_sub(s.virtual_address);
            if rva >= s.virtual_address && delta < s.raw_size {
                return Ok(s.raw_offset as usize + delta as usize);
            }
        }
        malformed(format!("RVA {rva:#x} is not backed by file data"))
    }

    fn u32_at_rva(&self, rva: u32) -> Result<u32, ParseError> {
        self.bytes.u32_at(self.rva_to_offset(rva)?)
    }

    fn u16_at_rva(&self, rva: u32) -> Result<u16, ParseError> {
        self.bytes.u16_at(self.rva_to_offset(rva)?)
    }

    fn u64_at_rva(&self, rva: u32) -> Result<u64, ParseError> {
        self.bytes.u64_at(self.rva_to_offset(rva)?)
    }

    /// The NUL-terminated ASCII string at `rva`.
    pub fn str_at_rva(&self, rva: u32) -> Result<String, ParseError> {
        let start = self.rva_to_offset(rva)?;
        let tail = self.bytes.get(start..).unwrap_or_default();
        match tail.iter().position(|&b| b == 0) {
            Some(len) => Ok(String::from_utf8_lossy(&tail[..len]).into_owned()),
            None => malformed(format!("unterminated string at RVA {rva:#x}")),
        }
    }

    /// Names of the DLLs in the import directory, in table order.
    pub fn imported_dlls(&self) -> Result<Vec<String>, ParseError> {
        let dir = self.directory(DIR_IMPORT);
        if !dir.is_present() {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        for i in 0..MAX_TABLE_ENTRIES {
            let at = dir.rva.wrapping_add((i * IMPORT_DESCRIPTOR_SIZE) as u32);
            let lookup = self.u32_at_rva(at)?;
            let name = self.u32_at_rva(at.wrapping_add(12))?;
            let thunks = self.u32_at_rva(at.wrapping_add(16))?;
            if lookup == 0 && name == 0 && thunks == 0 {
                return Ok(names);
            }
            names.push(self.str_at_rva(name)?);
        }
        malformed("import directory has no terminating descriptor")
    }

    /// Names of the functions imported from the `index`-th DLL (ordinal imports as `#N`).
    pub fn imported_functions(&self, index: usize) -> Result<Vec<String>, ParseError> {
        let dir = self.directory(DIR_IMPORT);
        let desc = dir.rva.wrapping_add((index * IMPORT_DESCRIPTOR_SIZE) as u32);
        let lookup = match self.u32_at_rva(desc)? {
            0 => self.u32_at_rva(desc.wrapping_add(16))?,
            rva => rva,
        };
        let mut functions = Vec::new();
        for i in 0..MAX_TABLE_ENTRIES {
            let entry = self.u64_at_rva(lookup.wrapping_add(8 * i as u32))?;
            if entry == 0 {
                return Ok(functions);
            }
            if entry & (1 << 63) != 0 {
                functions.push(format!("#{}", entry & 0xffff));
            } else {
                // Hint/name entry: a u16 hint followed by the name.
                let hint_name = (entry & 0x7fff_ffff) as u32;
                functions.push(self.str_at_rva(hint_name.wrapping_add(2))?);
            }
        }
        malformed("import lookup table has no terminating entry")
    }

    /// The RVA of the import address table slot of `function` (imported by name from any
    /// DLL), or `None` if it is not imported.
    pub fn import_slot(&self, function: &str) -> Result<Option<u32>, ParseError> {
        let dir = self.directory(DIR_IMPORT);
        for index in 0..self.imported_dlls()?.len() {
            let desc = dir.rva.wrapping_add((index * IMPORT_DESCRIPTOR_SIZE) as u32);
            let thunks = self.u32_at_rva(desc.wrapping_add(16))?;
            if let Some(i) = self.imported_functions(index)?.iter().position(|f| f == function) {
                return Ok(Some(thunks.wrapping_add(8 * i as u32)));
            }
        }
        Ok(None)
    }

    /// Named exports with their RVAs.
    pub fn exports(&self) -> Result<Vec<Export>, ParseError> {
        let dir = self.directory(DIR_EXPORT);
        if !dir.is_present() {
            return Ok(Vec::new());
        }
        let function_count = self.u32_at_rva(dir.rva.wrapping_add(20))? as usize;
        let name_count = self.u32_at_rva(dir.rva.wrapping_add(24))? as usize;
        if function_count > MAX_TABLE_ENTRIES || name_count > MAX_TABLE_ENTRIES {
            return malformed("export directory claims an absurd number of entries");
        }
        let functions = self.u32_at_rva(dir.rva.wrapping_add(28))?;
        let names = self.u32_at_rva(dir.rva.wrapping_add(32))?;
        let ordinals = self.u32_at_rva(dir.rva.wrapping_add(36))?;
        let mut exports = Vec::with_capacity(name_count);
        for i in 0..name_count {
            let name_rva = self.u32_at_rva(names.wrapping_add(4 * i as u32))?;
            let ordinal = usize::from(self.u16_at_rva(ordinals.wrapping_add(2 * i as u32))?);
            if ordinal >= function_count {
                return malformed(format!("export #{i} has ordinal index {ordinal} out of range"));
            }
            exports.push(Export {
                name: self.str_at_rva(name_rva)?,
                rva: self.u32_at_rva(functions.wrapping_add(4 * ordinal as u32))?,
            });
        }
        Ok(exports)
    }
}

fn parse_section(bytes: &[u8], at: usize) -> Result<Section, ParseError> {
    let raw_name = bytes.bytes_at(at, 8)?;
    let len = raw_name.iter().position(|&b| b == 0).unwrap_or(8);
    Ok(Section {
        name: String::from_utf8_lossy(&raw_name[..len]).into_owned(),
        virtual_size: bytes.u32_at(at + 8)?,
        virtual_address: bytes.u32_at(at + 12)?,
        raw_size: bytes.u32_at(at + 16)?,
        raw_offset: bytes.u32_at(at + 20)?,
        characteristics: bytes.u32_at(at + 36)?,
    })
}

/// The PE image checksum (as `CheckSumMappedFile` computes it): the file summed as
/// little-endian 16-bit words with end-around carry, the four bytes of the `CheckSum`
/// field counted as zero and an odd last byte padded with zero, plus the file length.
pub fn compute_checksum(bytes: &[u8], checksum_offset: usize) -> u32 {
    let field = checksum_offset..checksum_offset.saturating_add(4);
    let byte = |i: usize| -> u32 { if field.contains(&i) { 0 } else { bytes.get(i).copied().map_or(0, u32::from) } };
    let mut sum: u32 = 0;
    for i in (0..bytes.len()).step_by(2) {
        sum += byte(i) | (byte(i + 1) << 8);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    // Images are far below 4 GiB; the specification adds the length as a 32-bit value.
    sum.wrapping_add(bytes.len() as u32)
}

/// Computes the image checksum and writes it into the optional header; returns it.
pub fn stamp_checksum(bytes: &mut [u8]) -> Result<u32, ParseError> {
    let offset = Image::parse(bytes)?.checksum_offset;
    let checksum = compute_checksum(bytes, offset);
    bytes[offset..offset + 4].copy_from_slice(&checksum.to_le_bytes());
    Ok(checksum)
}

#[cfg(test)]
mod tests {
    use super::testimage::TestImage;
    use super::*;

    #[test]
    fn checksum_known_answers() {
        // Words 0x0201 + 0x0403 + (field skipped) + 0x0005 (odd byte padded), plus length 9.
        let bytes = [1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff, 5];
        assert_eq!(compute_checksum(&bytes, 4), 0x0609 + 9);
        // Carries fold back in: 0xffff + 0x0001 = 0x1_0000 -> 0x0001.
        assert_eq!(compute_checksum(&[0xff, 0xff, 0x01, 0x00], 100), 0x0001 + 4);
        // The checksum field's own value never matters.
        let mut a = vec![7u8; 64];
        let b = a.clone();
        a[8..12].copy_from_slice(&[9, 9, 9, 9]);
        assert_eq!(compute_checksum(&a, 8), compute_checksum(&b, 8));
        assert_ne!(compute_checksum(&a, 12), compute_checksum(&b, 12));
    }

    #[test]
    fn stamped_checksum_round_trips() {
        let mut bytes = TestImage::driver().build_unstamped();
        assert_eq!(Image::parse(&bytes).unwrap().checksum, 0);
        let stamped = stamp_checksum(&mut bytes).unwrap();
        let image = Image::parse(&bytes).unwrap();
        assert_eq!(image.checksum, stamped);
        assert_eq!(compute_checksum(&bytes, image.checksum_offset), stamped);
    }

    #[test]
    fn parses_headers_sections_imports_exports() {
        let bytes = TestImage::driver().build();
        let image = Image::parse(&bytes).unwrap();
        assert_eq!(image.machine, MACHINE_AMD64);
        assert_eq!(image.subsystem, SUBSYSTEM_NATIVE);
        assert_eq!(image.entry_point, 0x1000);
        let names: Vec<&str> = image.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [".text", ".rdata", ".data", ".pdata", ".reloc"]);
        assert_eq!(image.imported_dlls().unwrap(), ["ntoskrnl.exe", "NETIO.SYS"]);
        assert_eq!(image.imported_functions(1).unwrap(), ["WskRegister"]);
        let exports = image.exports().unwrap();
        assert_eq!(exports, [Export { name: "DriverEntry".into(), rva: 0x1000 }]);
        assert_eq!(image.section_at_rva(0x1004).unwrap().name, ".text");
        assert!(image.section_at_rva(0x9000).is_none());
    }

    #[test]
    fn rejects_non_pe_input() {
        assert!(Image::parse(b"").is_err());
        assert!(Image::parse(b"MZ").is_err());
        assert!(Image::parse(&[0u8; 512]).is_err());
        let mut bytes = TestImage::driver().build();
        let opt = u32::from_le_bytes([bytes[0x3c], bytes[0x3d], bytes[0x3e], bytes[0x3f]]) as usize + 24;
        bytes[opt..opt + 2].copy_from_slice(&0x10bu16.to_le_bytes());
        let err = Image::parse(&bytes).unwrap_err().to_string();
        assert!(err.contains("PE32+"), "{err}");
    }

    #[test]
    fn truncated_images_never_panic() {
        let bytes = TestImage::driver().build();
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            if let Ok(image) = Image::parse(cut) {
                let _ = image.imported_dlls();
                let _ = image.imported_functions(0);
                let _ = image.exports();
            }
        }
    }
}
