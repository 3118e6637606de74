/*
 * buf.h: a growable byte buffer, always NUL-terminated.
 *
 * A struct buf starts zeroed (BUF_INIT). Appends grow it geometrically; on
 * allocation failure the buffer is marked failed (buf->failed), further
 * appends do nothing, and the owner checks once at the end. buf_free()
 * releases the memory and leaves an empty, reusable buffer.
 */
#ifndef MAILROOM_BUF_H
#define MAILROOM_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data; /* NUL-terminated when len > 0 or after any append */
	size_t len;
	size_t cap;
	int failed;
};

#define BUF_INIT { NULL, 0, 0, 0 }

void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void buf_truncate(struct buf *b, size_t len);
/* The contents as a C string ("" when empty); valid until the next change. */
const char *buf_cstr(const struct buf *b);
/* Hand over the contents: returns a malloc'ed string the caller frees
 * (NULL if the buffer failed); the buffer is left empty. */
char *buf_steal(struct buf *b);
void buf_free(struct buf *b);

#endif
