/*
 * Translation unit prelude for the Winsock Kernel types of sys (WSK_*).
 *
 * Headers: Debian's libwine-dev, /usr/include/wine/wine/windows/ddk/wsk.h (mingw-w64 has no
 * wsk.h). Compiled by sys/tests/layout.rs with
 *   clang -target x86_64-w64-mingw32 -nostdinc
 *         -I/usr/include/wine/wine/windows -I/usr/include/wine/wine/msvcrt
 */
#include <windef.h>
#include <winternl.h>
#include <ddk/wdm.h>
#include <ddk/wsk.h>
