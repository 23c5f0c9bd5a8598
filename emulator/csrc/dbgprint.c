/*
 * DbgPrint / DbgPrintEx for the host kernel emulator.
 *
 * Rust cannot define C-variadic functions on stable, so these two exports live here. They
 * format the message as the Windows kernel would and hand it to the Rust sink
 * `wsk_emu_dbgprint_sink`.
 *
 * Formats follow the Windows kernel's printf dialect, not the host C library's:
 *   - `l` is 32 bits (Windows is LLP64): %ld %lu %lx read an int;
 *   - `ll`, `I64` are 64 bits; `I` (and `z`, `t`) is pointer-sized; `I32` is 32 bits;
 *   - %wZ prints a UNICODE_STRING*, %Z an ANSI_STRING*;
 *   - %ws %ls %S print a NUL-terminated UTF-16 string, %wc %lc %C a UTF-16 character;
 *   - %p prints 16 upper-case hex digits;
 *   - %n is ignored.
 * Messages are truncated to 512 bytes, as DbgPrint's.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define WSK_EMU_DBGPRINT_MAX 512

void wsk_emu_dbgprint_sink(uint32_t component, uint32_t level, int is_ex, int unicode, const char *message, size_t length);

typedef struct {
    uint16_t Length;
    uint16_t MaximumLength;
    const uint16_t *Buffer;
} emu_unicode_string;

typedef struct {
    uint16_t Length;
    uint16_t MaximumLength;
    const char *Buffer;
} emu_ansi_string;

typedef struct {
    char text[WSK_EMU_DBGPRINT_MAX];
    size_t length;
    int unicode;
} emu_output;

static void put_bytes(emu_output *out, const char *bytes, size_t count) {
    while (count > 0 && out->length + 1 < sizeof out->text) {
        out->text[out->length++] = *bytes++;
        count--;
    }
    out->text[out->length] = 0;
}

/* Appends one UTF-16 code point sequence as UTF-8 into `dest` (capacity `cap`, NUL-terminated). */
static size_t utf16_to_utf8(const uint16_t *units, size_t count, int stop_at_nul, char *dest, size_t cap) {
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t c = units[i];
        if (stop_at_nul && c == 0) {
            break;
        }
        if (c >= 0xD800 && c < 0xDC00 && i + 1 < count && units[i + 1] >= 0xDC00 && units[i + 1] < 0xE000) {
            c = 0x10000 + ((c - 0xD800) << 10) + (units[i + 1] - 0xDC00);
            i++;
        } else if (c >= 0xD800 && c < 0xE000) {
            c = 0xFFFD;
        }
        char encoded[4];
        size_t n;
        if (c < 0x80) {
            encoded[0] = (char)c;
            n = 1;
        } else if (c < 0x800) {
            encoded[0] = (char)(0xC0 | (c >> 6));
            encoded[1] = (char)(0x80 | (c & 0x3F));
            n = 2;
        } else if (c < 0x10000) {
            encoded[0] = (char)(0xE0 | (c >> 12));
            encoded[1] = (char)(0x80 | ((c >> 6) & 0x3F));
            encoded[2] = (char)(0x80 | (c & 0x3F));
            n = 3;
        } else {
            encoded[0] = (char)(0xF0 | (c >> 18));
            encoded[1] = (char)(0x80 | ((c >> 12) & 0x3F));
            encoded[2] = (char)(0x80 | ((c >> 6) & 0x3F));
            encoded[3] = (char)(0x80 | (c & 0x3F));
            n = 4;
        }
        if (used + n + 1 > cap) {
            break;
        }
        memcpy(dest + used, encoded, n);
        used += n;
    }
    dest[used] = 0;
    return used;
}

enum length_modifier { LEN_NONE, LEN_HH, LEN_H, LEN_32, LEN_64, LEN_PTR, LEN_WIDE, LEN_LONG_DOUBLE };

/* Formats `value` with a host conversion spec built from flags/width/precision and `conversion`. */
static void put_formatted_text(emu_output *out, const char *flags, int width, int precision, const char *text) {
    char spec[48];
    char buffer[WSK_EMU_DBGPRINT_MAX];
    if (precision >= 0) {
        snprintf(spec, sizeof spec, "%%%s*.*s", flags);
        snprintf(buffer, sizeof buffer, spec, width < 0 ? 0 : width, precision, text);
    } else {
        snprintf(spec, sizeof spec, "%%%s*s", flags);
        snprintf(buffer, sizeof buffer, spec, width < 0 ? 0 : width, text);
    }
    put_bytes(out, buffer, strlen(buffer));
}

static void format_message(emu_output *out, const char *format, va_list ap) {
    const char *p = format;
    while (*p) {
        if (*p != '%') {
            const char *start = p;
            while (*p && *p != '%') {
                p++;
            }
            put_bytes(out, start, (size_t)(p - start));
            continue;
        }
        const char *spec_start = p++;
        if (*p == '%') {
            put_bytes(out, "%", 1);
            p++;
            continue;
        }
        char flags[8];
        size_t flag_count = 0;
        while (*p && strchr("-+ #0", *p) && flag_count + 1 < sizeof flags) {
            flags[flag_count++] = *p++;
        }
        flags[flag_count] = 0;
        int width = -1;
        if (*p == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                if (flag_count + 1 < sizeof flags) {
                    flags[flag_count++] = '-';
                    flags[flag_count] = 0;
                }
                width = -width;
            }
            p++;
        } else if (*p >= '0' && *p <= '9') {
            width = 0;
            while (*p >= '0' && *p <= '9') {
                width = width * 10 + (*p++ - '0');
            }
        }
        int precision = -1;
        if (*p == '.') {
            p++;
            precision = 0;
            if (*p == '*') {
                precision = va_arg(ap, int);
                p++;
            } else {
                while (*p >= '0' && *p <= '9') {
                    precision = precision * 10 + (*p++ - '0');
                }
            }
        }
        enum length_modifier length = LEN_NONE;
        if (p[0] == 'h' && p[1] == 'h') {
            length = LEN_HH;
            p += 2;
        } else if (p[0] == 'h') {
            length = LEN_H;
            p++;
        } else if (p[0] == 'l' && p[1] == 'l') {
            length = LEN_64;
            p += 2;
        } else if (p[0] == 'l') {
            length = LEN_32;
            p++;
            if (*p == 's' || *p == 'c') {
                length = LEN_WIDE;
            }
        } else if (p[0] == 'w') {
            length = LEN_WIDE;
            p++;
        } else if (p[0] == 'I' && p[1] == '6' && p[2] == '4') {
            length = LEN_64;
            p += 3;
        } else if (p[0] == 'I' && p[1] == '3' && p[2] == '2') {
            length = LEN_32;
            p += 3;
        } else if (p[0] == 'I' || p[0] == 'z' || p[0] == 't' || p[0] == 'j') {
            length = p[0] == 'j' ? LEN_64 : LEN_PTR;
            p++;
        } else if (p[0] == 'L') {
            length = LEN_LONG_DOUBLE;
            p++;
        }
        char conversion = *p;
        if (conversion == 0) {
            put_bytes(out, spec_start, (size_t)(p - spec_start));
            break;
        }
        p++;
        char spec[48];
        char buffer[WSK_EMU_DBGPRINT_MAX];
        int w = width < 0 ? 0 : width;
        switch (conversion) {
        case 'd':
        case 'i':
        case 'u':
        case 'o':
        case 'x':
        case 'X': {
            int is_signed = conversion == 'd' || conversion == 'i';
            long long value;
            if (length == LEN_64 || length == LEN_PTR) {
                value = va_arg(ap, long long);
            } else {
                int raw = va_arg(ap, int);
                if (length == LEN_HH) {
                    value = is_signed ? (long long)(signed char)raw : (long long)(unsigned char)raw;
                } else if (length == LEN_H) {
                    value = is_signed ? (long long)(short)raw : (long long)(unsigned short)raw;
                } else {
                    value = is_signed ? (long long)raw : (long long)(unsigned int)raw;
                }
            }
            if (precision >= 0) {
                snprintf(spec, sizeof spec, "%%%s*.*ll%c", flags, conversion);
                snprintf(buffer, sizeof buffer, spec, w, precision, value);
            } else {
                snprintf(spec, sizeof spec, "%%%s*ll%c", flags, conversion);
                snprintf(buffer, sizeof buffer, spec, w, value);
            }
            put_bytes(out, buffer, strlen(buffer));
            break;
        }
        case 'c':
        case 'C': {
            int value = va_arg(ap, int);
            if (conversion == 'C' || length == LEN_WIDE) {
                uint16_t unit = (uint16_t)value;
                out->unicode = 1;
                utf16_to_utf8(&unit, 1, 0, buffer, sizeof buffer);
            } else {
                buffer[0] = (char)value;
                buffer[1] = 0;
            }
            put_formatted_text(out, flags, width, -1, buffer);
            break;
        }
        case 's':
        case 'S': {
            const void *value = va_arg(ap, const void *);
            if (value == NULL) {
                put_formatted_text(out, flags, width, precision, "(null)");
            } else if (conversion == 'S' || length == LEN_WIDE) {
                out->unicode = 1;
                size_t limit = precision >= 0 ? (size_t)precision : (size_t)-1;
                utf16_to_utf8((const uint16_t *)value, limit, 1, buffer, sizeof buffer);
                put_formatted_text(out, flags, width, -1, buffer);
            } else {
                put_formatted_text(out, flags, width, precision, (const char *)value);
            }
            break;
        }
        case 'Z': {
            const void *value = va_arg(ap, const void *);
            if (value == NULL) {
                put_formatted_text(out, flags, width, -1, "(null)");
            } else if (length == LEN_WIDE) {
                const emu_unicode_string *string = (const emu_unicode_string *)value;
                out->unicode = 1;
                if (string->Buffer == NULL) {
                    buffer[0] = 0;
                } else {
                    utf16_to_utf8(string->Buffer, string->Length / 2, 0, buffer, sizeof buffer);
                }
                put_formatted_text(out, flags, width, -1, buffer);
            } else {
                const emu_ansi_string *string = (const emu_ansi_string *)value;
                size_t count = string->Buffer == NULL ? 0 : string->Length;
                if (count >= sizeof buffer) {
                    count = sizeof buffer - 1;
                }
                if (count > 0) {
                    memcpy(buffer, string->Buffer, count);
                }
                buffer[count] = 0;
                put_formatted_text(out, flags, width, -1, buffer);
            }
            break;
        }
        case 'p': {
            const void *value = va_arg(ap, const void *);
            snprintf(buffer, sizeof buffer, "%016llX", (unsigned long long)(uintptr_t)value);
            put_formatted_text(out, flags, width, -1, buffer);
            break;
        }
        case 'e':
        case 'E':
        case 'f':
        case 'F':
        case 'g':
        case 'G':
        case 'a':
        case 'A': {
            if (length == LEN_LONG_DOUBLE) {
                long double value = va_arg(ap, long double);
                snprintf(spec, sizeof spec, "%%%s*.*L%c", flags, conversion);
                snprintf(buffer, sizeof buffer, spec, w, precision < 0 ? 6 : precision, value);
            } else {
                double value = va_arg(ap, double);
                snprintf(spec, sizeof spec, "%%%s*.*%c", flags, conversion);
                snprintf(buffer, sizeof buffer, spec, w, precision < 0 ? 6 : precision, value);
            }
            put_bytes(out, buffer, strlen(buffer));
            break;
        }
        case 'n':
            (void)va_arg(ap, void *);
            break;
        default:
            put_bytes(out, spec_start, (size_t)(p - spec_start));
            break;
        }
    }
}

uint32_t DbgPrint(const char *Format, ...) {
    emu_output out;
    out.text[0] = 0;
    out.length = 0;
    out.unicode = 0;
    if (Format != NULL) {
        va_list ap;
        va_start(ap, Format);
        format_message(&out, Format, ap);
        va_end(ap);
    }
    wsk_emu_dbgprint_sink(0, 0, 0, out.unicode, out.text, out.length);
    return 0;
}

uint32_t DbgPrintEx(uint32_t ComponentId, uint32_t Level, const char *Format, ...) {
    emu_output out;
    out.text[0] = 0;
    out.length = 0;
    out.unicode = 0;
    if (Format != NULL) {
        va_list ap;
        va_start(ap, Format);
        format_message(&out, Format, ap);
        va_end(ap);
    }
    wsk_emu_dbgprint_sink(ComponentId, Level, 1, out.unicode, out.text, out.length);
    return 0;
}
