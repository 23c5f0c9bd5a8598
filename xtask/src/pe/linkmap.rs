//! Reads the link map that lld-link writes for `/MAP` (MSVC `link.exe` format).
//!
//! The map is an independent record of the link: which image it describes (timestamp,
//! preferred load address), where the entry point is, and where every public symbol
//! ended up. The image checks use it to prove the entry point is `DriverEntry`.

use std::fmt;

/// A symbol line: `SSSS:OOOOOOOO  name  VVVVVVVVVVVVVVVV  object`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapSymbol {
    pub name: String,
    pub section: u16,
    pub offset: u32,
    /// Virtual address at the preferred load address ("Rva+Base").
    pub address: u64,
}

/// The facts read from a link map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMap {
    /// `Timestamp is XXXXXXXX`: equals the image's COFF `TimeDateStamp`.
    pub timestamp: u32,
    /// `Preferred load address is XXXXXXXXXXXXXXXX`: equals the image's `ImageBase`.
    pub load_address: u64,
    /// `entry point at SSSS:OOOOOOOO` (1-based section number, offset).
    pub entry: Option<(u16, u32)>,
    pub symbols: Vec<MapSymbol>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError(String);

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MapError {}

impl LinkMap {
    pub fn parse(text: &str) -> Result<Self, MapError> {
        let mut timestamp = None;
        let mut load_address = None;
        let mut entry = None;
        let mut symbols = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("Timestamp is ") {
                let hex = rest.split_whitespace().next().unwrap_or_default();
                timestamp = Some(parse_hex32(hex, "timestamp")?);
            } else if let Some(rest) = line.strip_prefix("Preferred load address is ") {
                load_address = Some(parse_hex64(rest.trim(), "load address")?);
            } else if let Some(rest) = line.strip_prefix("entry point at ") {
                entry = Some(
                    parse_location(rest.trim())
                        .ok_or_else(|| MapError(format!("unreadable entry point location `{rest}`")))?,
                );
            } else if let Some(symbol) = parse_symbol(line) {
                symbols.push(symbol);
            }
        }
        Ok(Self {
            timestamp: timestamp.ok_or_else(|| MapError("no `Timestamp is` line".into()))?,
            load_address: load_address.ok_or_else(|| MapError("no `Preferred load address is` line".into()))?,
            entry,
            symbols,
        })
    }

    /// Every symbol line with exactly this name.
    pub fn symbols_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a MapSymbol> {
        self.symbols.iter().filter(move |s| s.name == name)
    }
}

fn parse_hex32(text: &str, what: &str) -> Result<u32, MapError> {
    u32::from_str_radix(text, 16).map_err(|e| MapError(format!("bad {what} `{text}`: {e}")))
}

fn parse_hex64(text: &str, what: &str) -> Result<u64, MapError> {
    u64::from_str_radix(text, 16).map_err(|e| MapError(format!("bad {what} `{text}`: {e}")))
}

/// `SSSS:OOOOOOOO` as used throughout the map.
fn parse_location(text: &str) -> Option<(u16, u32)> {
    let (section, offset) = text.split_once(':')?;
    if section.len() != 4 || offset.len() != 8 {
        return None;
    }
    Some((u16::from_str_radix(section, 16).ok()?, u32::from_str_radix(offset, 16).ok()?))
}

fn parse_symbol(line: &str) -> Option<MapSymbol> {
    let mut words = line.split_whitespace();
    let (section, offset) = parse_location(words.next()?)?;
    let name = words.next()?;
    let address = words.next()?;
    if address.len() != 16 {
        return None;
    }
    Some(MapSymbol { name: name.to_owned(), section, offset, address: u64::from_str_radix(address, 16).ok()? })
}

#[cfg(test)]
pub(crate) const SAMPLE: &str = "
 echo_driver

 Timestamp is 6b050648 (Tue Nov 24 03:36:40 2026)

 Preferred load address is 0000000180000000

 Start         Length     Name                   Class
 0001:00000000 00000dd0H .text                   CODE
 0002:00000000 000001e0H .rdata                  DATA

  Address         Publics by Value              Rva+Base               Lib:Object

 0001:00000000       DriverEntry                0000000180001000     echo.o
 0001:00000110       __CxxFrameHandler3         0000000180001110     echo.o
 0002:00000090       _fltused                   0000000180002090     echo.o

 entry point at         0001:00000000

 Static symbols

 0001:00000120       _ZN4echo6unload17h9b42c530424119c3E 0000000180001120     echo.o
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_header_entry_and_symbols() {
        let map = LinkMap::parse(SAMPLE).unwrap();
        assert_eq!(map.timestamp, 0x6b05_0648);
        assert_eq!(map.load_address, 0x1_8000_0000);
        assert_eq!(map.entry, Some((1, 0)));
        let entry: Vec<_> = map.symbols_named("DriverEntry").collect();
        assert_eq!(entry, [&MapSymbol { name: "DriverEntry".into(), section: 1, offset: 0, address: 0x1_8000_1000 }]);
        // Section summary lines are not symbols; static symbols are.
        assert!(map.symbols_named(".text").next().is_none());
        assert_eq!(map.symbols.len(), 4);
    }

    #[test]
    fn requires_identifying_header() {
        let err = LinkMap::parse("entry point at 0001:00000000").unwrap_err();
        assert!(err.to_string().contains("Timestamp"), "{err}");
        let no_base = SAMPLE.replace("Preferred load address", "Load");
        assert!(LinkMap::parse(&no_base).is_err());
    }
}
