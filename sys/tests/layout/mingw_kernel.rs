//! The types checked against mingw-w64's kernel headers (`ddk/ntddk.h`, `ddk/wdm.h`, `ntdef.h`,
//! `guiddef.h`; prelude `mingw_kernel.h`), and the known x64 facts checked at compile time.

use core::mem::{offset_of, size_of};

use wsk_sys::*;

use crate::table::{Table, constants, layout_table};

/// The kernel types: I/O manager, dispatcher objects, MDL, registry.
pub(crate) fn table() -> Table {
    let mut table = layout_table! {
        // Zero-sized Rust types for C types that are incomplete in C too.
        opaque {
            IO_WORKITEM: "allocated and owned by the I/O manager (IoAllocateWorkItem); an incomplete \
                          `struct _IO_WORKITEM` in wdm.h too";
        }

        LIST_ENTRY in MingwKernel as "LIST_ENTRY" {
            Flink => "Flink";
            Blink => "Blink";
        }
        UNICODE_STRING in MingwKernel as "UNICODE_STRING" {
            Length => "Length";
            MaximumLength => "MaximumLength";
            Buffer => "Buffer";
        }
        // C: an anonymous union of `Count` and `Ptr`.
        EX_RUNDOWN_REF in MingwKernel as "EX_RUNDOWN_REF" {
            Count => "Count";
        }
        GUID in MingwKernel as "GUID" {
            Data1 => "Data1";
            Data2 => "Data2";
            Data3 => "Data3";
            Data4 => "Data4";
        }
        // C: `Status` shares an anonymous union with `Pointer`.
        IO_STATUS_BLOCK in MingwKernel as "IO_STATUS_BLOCK" {
            Status => "Status";
            Information => "Information";
        }
        IRP_OVERLAY in MingwKernel as "__typeof__(((IRP *)0)->Overlay.AsynchronousParameters)" {
            UserApcRoutine => "UserApcRoutine";
            UserApcContext => "UserApcContext";
        }
        // C: `DriverContext` shares an anonymous union with `DeviceQueueEntry`, and
        // `CurrentStackLocation` one with `PacketType`; `ListEntry` is a LIST_ENTRY.
        IRP_TAIL_OVERLAY in MingwKernel as "__typeof__(((IRP *)0)->Tail.Overlay)" {
            DriverContext => "DriverContext";
            Thread => "Thread";
            AuxiliaryBuffer => "AuxiliaryBuffer";
            ListEntry => "ListEntry";
            CurrentStackLocation => "CurrentStackLocation";
            OriginalFileObject => "OriginalFileObject";
        }
        // C: `Apc` is a KAPC.
        IRP_TAIL in MingwKernel as "__typeof__(((IRP *)0)->Tail)" {
            Overlay => "Overlay";
            Apc => "Apc";
            CompletionKey => "CompletionKey";
        }
        // The WDK declares `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT) _IRP` (16 on x64);
        // mingw-w64 and Wine omit the alignment.
        IRP in MingwKernel as "IRP", declspec_align 16 {
            Type => "Type";
            Size => "Size";
            MdlAddress => "MdlAddress";
            Flags => "Flags";
            // The `AssociatedIrp` union (`MasterIrp`, `IrpCount`, `SystemBuffer`) as one pointer.
            AssociatedIrp => "AssociatedIrp";
            ThreadListEntry => "ThreadListEntry";
            IoStatus => "IoStatus";
            RequestorMode => "RequestorMode";
            PendingReturned => "PendingReturned";
            StackCount => "StackCount";
            CurrentLocation => "CurrentLocation";
            Cancel => "Cancel";
            CancelIrql => "CancelIrql";
            ApcEnvironment => "ApcEnvironment";
            AllocationFlags => "AllocationFlags";
            UserIosb => "UserIosb";
            UserEvent => "UserEvent";
            // The `Overlay` union as its `AsynchronousParameters` view.
            Overlay => "Overlay";
            Overlay.UserApcContext => "Overlay.AsynchronousParameters.UserApcContext";
            CancelRoutine => "CancelRoutine";
            UserBuffer => "UserBuffer";
            Tail => "Tail";
            Tail.Overlay.CurrentStackLocation => "Tail.Overlay.CurrentStackLocation";
        }
        IO_STACK_LOCATION_OTHERS in MingwKernel as "__typeof__(((IO_STACK_LOCATION *)0)->Parameters.Others)" {
            Argument1 => "Argument1";
            Argument2 => "Argument2";
            Argument3 => "Argument3";
            Argument4 => "Argument4";
        }
        IO_STACK_LOCATION in MingwKernel as "IO_STACK_LOCATION" {
            MajorFunction => "MajorFunction";
            MinorFunction => "MinorFunction";
            Flags => "Flags";
            Control => "Control";
            // The `Parameters` union as its `Others` view.
            Parameters => "Parameters";
            Parameters.Argument1 => "Parameters.Others.Argument1";
            Parameters.Argument2 => "Parameters.Others.Argument2";
            Parameters.Argument3 => "Parameters.Others.Argument3";
            Parameters.Argument4 => "Parameters.Others.Argument4";
            DeviceObject => "DeviceObject";
            FileObject => "FileObject";
            CompletionRoutine => "CompletionRoutine";
            Context => "Context";
        }
        // C: bytes 0 to 3 are anonymous unions (with `Lock` over all four). Rust names one view
        // of each byte; byte 3 is kept as `Reserved1` (C `DpcActive`, `DebugActive`, ...).
        DISPATCHER_HEADER in MingwKernel as "DISPATCHER_HEADER" {
            Type => "Type";
            Signalling => "Signalling";
            Size => "Size";
            Reserved1 => "DpcActive";
            SignalState => "SignalState";
            WaitListHead => "WaitListHead";
        }
        KEVENT in MingwKernel as "KEVENT" {
            Header => "Header";
        }
        KTIMER in MingwKernel as "KTIMER" {
            Header => "Header";
            DueTime => "DueTime";
            TimerListEntry => "TimerListEntry";
            Dpc => "Dpc";
            Processor => "Processor";
            Period => "Period";
        }
        KDPC in MingwKernel as "KDPC" {
            Type => "Type";
            Importance => "Importance";
            Number => "Number";
            DpcListEntry => "DpcListEntry";
            DeferredRoutine => "DeferredRoutine";
            DeferredContext => "DeferredContext";
            SystemArgument1 => "SystemArgument1";
            SystemArgument2 => "SystemArgument2";
            DpcData => "DpcData";
        }
        MDL in MingwKernel as "MDL" {
            Next => "Next";
            Size => "Size";
            MdlFlags => "MdlFlags";
            Process => "Process";
            MappedSystemVa => "MappedSystemVa";
            StartVa => "StartVa";
            ByteCount => "ByteCount";
            ByteOffset => "ByteOffset";
        }
        DRIVER_OBJECT in MingwKernel as "DRIVER_OBJECT" {
            Type => "Type";
            Size => "Size";
            DeviceObject => "DeviceObject";
            Flags => "Flags";
            DriverStart => "DriverStart";
            DriverSize => "DriverSize";
            DriverSection => "DriverSection";
            DriverExtension => "DriverExtension";
            DriverName => "DriverName";
            HardwareDatabase => "HardwareDatabase";
            FastIoDispatch => "FastIoDispatch";
            DriverInit => "DriverInit";
            DriverStartIo => "DriverStartIo";
            DriverUnload => "DriverUnload";
            MajorFunction => "MajorFunction";
        }
        // The WDK declares `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT) _DEVICE_OBJECT` (16 on x64,
        // size 0x150); mingw-w64 and Wine omit the alignment.
        DEVICE_OBJECT in MingwKernel as "DEVICE_OBJECT", declspec_align 16 {
            Type => "Type";
            Size => "Size";
            ReferenceCount => "ReferenceCount";
            DriverObject => "DriverObject";
            NextDevice => "NextDevice";
            AttachedDevice => "AttachedDevice";
            CurrentIrp => "CurrentIrp";
            Timer => "Timer";
            Flags => "Flags";
            Characteristics => "Characteristics";
            Vpb => "Vpb";
            DeviceExtension => "DeviceExtension";
            DeviceType => "DeviceType";
            StackSize => "StackSize";
            // `Reserved` covers every C member from `Queue` to the end.
            Reserved => "Queue", size "sizeof(DEVICE_OBJECT) - __builtin_offsetof(DEVICE_OBJECT, Queue)";
        }
        OBJECT_ATTRIBUTES in MingwKernel as "OBJECT_ATTRIBUTES" {
            Length => "Length";
            RootDirectory => "RootDirectory";
            ObjectName => "ObjectName";
            Attributes => "Attributes";
            SecurityDescriptor => "SecurityDescriptor";
            SecurityQualityOfService => "SecurityQualityOfService";
        }
        KEY_VALUE_PARTIAL_INFORMATION in MingwKernel as "KEY_VALUE_PARTIAL_INFORMATION" {
            TitleIndex => "TitleIndex";
            Type => "Type";
            DataLength => "DataLength";
            Data => "Data";
        }
    };
    table.constants = constants!(MingwKernel: NTDDI_WIN8, MDL_PARTIAL, MDL_PARTIAL_HAS_BEEN_MAPPED);
    table
}

// The host the table is computed on must be 64-bit little-endian, and a few known x64 facts from
// Microsoft's documentation (DESIGN.md, section 4) must hold. Constant evaluation checks this
// wherever this file compiles, without clang and also for the driver target:
// `cargo check -p wsk-sys --tests --target x86_64-pc-windows-msvc`.
const _: () = {
    assert!(
        cfg!(target_pointer_width = "64") && cfg!(target_endian = "little"),
        "the Rust layouts stand for x86_64-pc-windows-msvc only on a 64-bit little-endian target"
    );
    assert!(size_of::<IRP>() == 0xD0);
    assert!(offset_of!(IRP, IoStatus) == 0x30);
    assert!(offset_of!(IRP, Tail.Overlay.CurrentStackLocation) == 0xB8);
    assert!(size_of::<IO_STACK_LOCATION>() == 0x48);
    assert!(offset_of!(IO_STACK_LOCATION, Control) == 3);
    assert!(offset_of!(IO_STACK_LOCATION, CompletionRoutine) == 0x38);
    assert!(offset_of!(IO_STACK_LOCATION, Context) == 0x40);
    assert!(offset_of!(DRIVER_OBJECT, DriverUnload) == 0x68);
};
