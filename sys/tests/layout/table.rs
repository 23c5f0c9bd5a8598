//! The layout table: what each Rust type, field by field, must coincide with in C, and which
//! header set declares the C type. Each header set's entries are in its own module
//! ([`crate::mingw_kernel`], [`crate::mingw_winsock`], [`crate::wine_wsk`], [`crate::documented`]).

use core::mem::size_of;

use crate::{documented, mingw_kernel, mingw_winsock, wine_wsk};

/// The C header set a type is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// mingw-w64 `ddk/ntddk.h` (with `ddk/wdm.h` and `ntdef.h`).
    MingwKernel,
    /// mingw-w64 `winsock2.h`, `ws2def.h`, `ws2ipdef.h`, `ws2tcpip.h`, `mswsock.h`.
    MingwWinsock,
    /// Wine's `ddk/wsk.h`.
    WineWsk,
    /// `tests/layout/documented.h`: transcribed from Microsoft's documentation, on mingw-w64 base
    /// types.
    Documented,
}

impl Header {
    pub(crate) const ALL: [Self; 4] = [Self::MingwKernel, Self::MingwWinsock, Self::WineWsk, Self::Documented];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::MingwKernel => "mingw-kernel",
            Self::MingwWinsock => "mingw-winsock",
            Self::WineWsk => "wine-wsk",
            Self::Documented => "documented",
        }
    }

    /// The prelude in `tests/layout/` the generated C file includes.
    pub(crate) fn prelude(self) -> &'static str {
        match self {
            Self::MingwKernel => "mingw_kernel.h",
            Self::MingwWinsock => "mingw_winsock.h",
            Self::WineWsk => "wine_wsk.h",
            Self::Documented => "documented.h",
        }
    }

    /// Include options of the TU.
    pub(crate) fn clang_args(self) -> &'static [&'static str] {
        match self {
            Self::MingwKernel | Self::Documented => &["-I/usr/x86_64-w64-mingw32/include/ddk"],
            Self::MingwWinsock => &[],
            Self::WineWsk => &["-nostdinc", "-I/usr/include/wine/wine/windows", "-I/usr/include/wine/wine/msvcrt"],
        }
    }

    /// A header the TU cannot do without, and the Debian package that ships it.
    pub(crate) fn required_header(self) -> (&'static str, &'static str) {
        match self {
            Self::MingwKernel | Self::Documented => {
                ("/usr/x86_64-w64-mingw32/include/ddk/ntddk.h", "mingw-w64-x86-64-dev")
            }
            Self::MingwWinsock => ("/usr/x86_64-w64-mingw32/include/ws2tcpip.h", "mingw-w64-x86-64-dev"),
            Self::WineWsk => ("/usr/include/wine/wine/windows/ddk/wsk.h", "libwine-dev"),
        }
    }
}

/// One Rust field (or nested field path) and the C member it must coincide with.
#[derive(Clone, Debug)]
pub(crate) struct Field {
    /// Rust field path, e.g. `Tail.Overlay.CurrentStackLocation`.
    pub(crate) rust: &'static str,
    /// C member designator, e.g. `Tail.Overlay.CurrentStackLocation` (anonymous unions and
    /// structs are transparent in C).
    pub(crate) c: &'static str,
    pub(crate) offset: usize,
    /// Size of a top-level field. Nested paths check the offset only: the nested type has an
    /// entry of its own.
    pub(crate) size: Option<usize>,
    /// C expression for the size when the Rust field stands for several C members.
    pub(crate) c_size: Option<&'static str>,
}

/// A type checked field by field.
#[derive(Clone, Debug)]
pub(crate) struct Type {
    pub(crate) rust: &'static str,
    pub(crate) header: Header,
    /// C type name, or a `__typeof__` expression for a C type without a name.
    pub(crate) c: &'static str,
    /// `DECLSPEC_ALIGN(n)` of the Windows Driver Kit declaration that the header set lacks: the C
    /// side is checked as if the header had it.
    pub(crate) declspec_align: Option<usize>,
    pub(crate) size: usize,
    pub(crate) align: usize,
    pub(crate) fields: Vec<Field>,
}

/// A zero-sized Rust type standing for a C type that is opaque (incomplete) in C too.
#[derive(Clone, Debug)]
pub(crate) struct Opaque {
    pub(crate) rust: &'static str,
    pub(crate) size: usize,
    pub(crate) reason: &'static str,
}

/// A constant whose Rust value must equal the C macro of the same name.
#[derive(Clone, Debug)]
pub(crate) struct Constant {
    pub(crate) name: &'static str,
    pub(crate) header: Header,
    pub(crate) value: usize,
}

/// [`Constant`]s of one header set: `constants!(Header: NAME, ...)`.
macro_rules! constants {
    ($header:ident : $( $name:ident ),* $(,)?) => {
        vec![$(
            $crate::table::Constant {
                name: stringify!($name),
                header: $crate::table::Header::$header,
                value: usize::try_from($name).unwrap(),
            }
        ),*]
    };
}

#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub(crate) types: Vec<Type>,
    pub(crate) opaque: Vec<Opaque>,
    pub(crate) constants: Vec<Constant>,
}

/// Size of what a field projection points to.
pub(crate) fn pointee_size<T, F>(_: fn(&T) -> *const F) -> usize {
    size_of::<F>()
}

macro_rules! opt {
    () => {
        None
    };
    ($value:expr) => {
        Some($value)
    };
}

macro_rules! field_size {
    ($ty:ident, $field:ident) => {
        Some($crate::table::pointee_size(|value: &$ty| &raw const value.$field))
    };
    ($ty:ident, $field:ident $(. $sub:ident)+) => {
        None
    };
}

/// Builds the [`Table`] from entries of the form
///
/// ```text
/// [opaque { RustType: "reason"; }]
/// RustType in Header as "C type" [, declspec_align N] {
///     rust_field[.nested...] => "c.member" [, size "C size expression"];
/// }
/// ```
macro_rules! layout_table {
    (
        opaque {
            $( $opaque:ident : $reason:literal ; )*
        }
        $( $types:tt )*
    ) => {{
        let mut table = $crate::table::layout_table!($( $types )*);
        table.opaque = vec![$(
            $crate::table::Opaque {
                rust: stringify!($opaque),
                size: ::core::mem::size_of::<$opaque>(),
                reason: $reason,
            }
        ),*];
        table
    }};
    (
        $(
            $ty:ident in $header:ident as $c_ty:literal $(, declspec_align $declspec:literal)? {
                $( $field:ident $(. $sub:ident)* => $c_path:literal $(, size $c_size:literal)? ; )*
            }
        )*
    ) => {
        $crate::table::Table {
            types: vec![$(
                $crate::table::Type {
                    rust: stringify!($ty),
                    header: $crate::table::Header::$header,
                    c: $c_ty,
                    declspec_align: $crate::table::opt!($($declspec)?),
                    size: ::core::mem::size_of::<$ty>(),
                    align: ::core::mem::align_of::<$ty>(),
                    fields: vec![$(
                        $crate::table::Field {
                            rust: concat!(stringify!($field) $(, ".", stringify!($sub))*),
                            c: $c_path,
                            offset: ::core::mem::offset_of!($ty, $field $(. $sub)*),
                            size: $crate::table::field_size!($ty, $field $(. $sub)*),
                            c_size: $crate::table::opt!($($c_size)?),
                        }
                    ),*],
                }
            ),*],
            opaque: Vec::new(),
            constants: Vec::new(),
        }
    };
}

pub(crate) use {constants, field_size, layout_table, opt};

/// The one Rust-to-C mapping of `wsk-sys`: every header set's entries, in [`Header::ALL`] order.
///
/// Every field of every `#[repr(C)]` type has an entry (checked: offset and size). Nested Rust
/// paths (`Tail.Overlay.CurrentStackLocation`) add offset checks where the Rust type flattens a C
/// union or names a well-known member; their sizes are checked through the nested type's own
/// entry. C member paths see through anonymous unions and structs as C does.
pub(crate) fn table() -> Table {
    let parts = [mingw_kernel::table(), mingw_winsock::table(), wine_wsk::table(), documented::table()];
    let mut table = Table { types: Vec::new(), opaque: Vec::new(), constants: Vec::new() };
    for part in parts {
        table.types.extend(part.types);
        table.opaque.extend(part.opaque);
        table.constants.extend(part.constants);
    }
    table
}
