/*
 * base64.h: RFC 4648 base64, strict, for SASL (RFC 4422) exchanges; and
 * the value of one base64 digit, for the decoders that stream (MIME) or use
 * another alphabet (IMAP's modified UTF-7).
 */
#ifndef MAILROOM_BASE64_H
#define MAILROOM_BASE64_H

#include <stddef.h>

/* Encode len bytes into out (NUL-terminated); out needs base64_encoded_len. */
#define BASE64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4 + 1)
void base64_encode(const void *data, size_t len, char *out);
/* Decode; out needs (len / 4) * 3 + 1 bytes (a NUL is appended). Returns the
 * decoded length, or -1 for anything that is not canonical base64 (bad
 * characters, bad padding, length not a multiple of 4). */
long base64_decode(const char *in, size_t len, unsigned char *out);
/* The value (0..63) of the digit c, where '+' is 62 and c63 is 63 ('/' in
 * RFC 4648 4; ',' in IMAP's modified UTF-7, RFC 3501 5.1.3); -1 if c is
 * not a digit. */
int base64_value(unsigned char c, char c63);

#endif
