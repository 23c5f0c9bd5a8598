/*
 * Translation unit prelude for the socket address types of sys (SOCKADDR_*, IN_ADDR, IN6_ADDR,
 * ADDRINFOEXW, CMSGHDR).
 *
 * Headers: Debian's mingw-w64-x86-64-dev, /usr/x86_64-w64-mingw32/include. ws2def.h and
 * ws2ipdef.h come through winsock2.h and ws2tcpip.h; ADDRINFOEXW is in ws2tcpip.h and
 * WSACMSGHDR (CMSGHDR in Microsoft's ws2def.h) in mswsock.h. Compiled by sys/tests/layout.rs with
 *   clang -target x86_64-w64-mingw32
 */
#include <winsock2.h>
#include <ws2def.h>
#include <ws2ipdef.h>
#include <ws2tcpip.h>
#include <mswsock.h>
