/*
 * Translation unit prelude for the kernel types of sys (IRP, DEVICE_OBJECT, KEVENT, MDL, ...).
 *
 * Headers: Debian's mingw-w64-x86-64-dev, /usr/x86_64-w64-mingw32/include/ddk/ntddk.h (which
 * includes ddk/wdm.h and ntdef.h). Compiled by sys/tests/layout.rs with
 *   clang -target x86_64-w64-mingw32 -I/usr/x86_64-w64-mingw32/include/ddk
 */
#include <ntddk.h>
