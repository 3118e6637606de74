/*
 * mime_decode.c: Content-Transfer-Encoding decoders (RFC 2045 6) and RFC 2047
 * header decoding.
 *
 * Design note: the decoders are streaming state machines (BINARY[] of a
 * 100 MB attachment is decoded in slices, from the file, straight to the
 * socket) with a fixed-size state: base64 keeps at most 3 sextets, QP keeps
 * the '=' escape in progress and the run of whitespace that might turn out
 * to be trailing (RFC 2045 6.7 rule 3: decoders delete it), bounded by
 * QP_MAX_PENDING_WS (a longer run cannot be transport padding that anybody
 * added, so it is flushed as data).
 */
#include <stdlib.h>
#include <string.h>

#include "lib/base64.h"
#include "mime/mime_private.h"

#define QP_MAX_PENDING_WS 1024

enum mime_cte mime_decode_cte(const char *t, size_t len)
{
	if (t == NULL || len == 0 || mime_ascii_ieq(t, len, "7bit"))
		return MIME_CTE_7BIT;
	if (mime_ascii_ieq(t, len, "8bit"))
		return MIME_CTE_8BIT;
	if (mime_ascii_ieq(t, len, "binary"))
		return MIME_CTE_BINARY;
	if (mime_ascii_ieq(t, len, "quoted-printable"))
		return MIME_CTE_QP;
	if (mime_ascii_ieq(t, len, "base64"))
		return MIME_CTE_BASE64;
	return MIME_CTE_UNKNOWN;
}

enum qp_state { QP_TEXT, QP_EQ, QP_EQ_HEX, QP_EQ_WS, QP_CR };

struct mime_decoder {
	enum mime_cte cte;
	/* base64 */
	uint32_t acc;
	unsigned int nbits_count; /* sextets in acc */
	bool b64_done;
	/* qp */
	enum qp_state qs;
	unsigned char hex1;
	char ws[QP_MAX_PENDING_WS];
	size_t nws;
	bool eq_before_cr; /* CR seen in QP_EQ_WS / QP_EQ (soft break) */
	/* output batching */
	unsigned char out[4096];
	size_t nout;
	int (*cb)(void *ctx, const void *data, size_t len);
	void *cb_ctx;
	bool cb_failed;
};

struct mime_decoder *mime_decoder_new(enum mime_cte cte)
{
	if (cte == MIME_CTE_UNKNOWN)
		return NULL;
	struct mime_decoder *d = calloc(1, sizeof(*d));
	if (d != NULL)
		d->cte = cte;
	return d;
}

void mime_decoder_free(struct mime_decoder **d)
{
	free(*d);
	*d = NULL;
}

static void flush_out(struct mime_decoder *d)
{
	if (d->nout > 0 && !d->cb_failed && d->cb(d->cb_ctx, d->out, d->nout) < 0)
		d->cb_failed = true;
	d->nout = 0;
}

static inline void emit(struct mime_decoder *d, unsigned char c)
{
	if (d->nout == sizeof(d->out))
		flush_out(d);
	d->out[d->nout++] = c;
}

static void emit_n(struct mime_decoder *d, const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++)
		emit(d, s[i]);
}


static void b64_feed(struct mime_decoder *d, const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n && !d->b64_done; i++) {
		if (s[i] == '=') {
			/* RFC 2045 6.8: padding means the end of the data */
			d->b64_done = true;
			break;
		}
		int v = base64_value(s[i], '/');
		if (v < 0)
			continue; /* RFC 2045 6.8: ignore what is not in the alphabet */
		d->acc = (d->acc << 6) | (uint32_t)v;
		if (++d->nbits_count == 4) {
			emit(d, (unsigned char)(d->acc >> 16));
			emit(d, (unsigned char)(d->acc >> 8));
			emit(d, (unsigned char)d->acc);
			d->acc = 0;
			d->nbits_count = 0;
		}
	}
}

static void b64_finish(struct mime_decoder *d)
{
	if (d->nbits_count == 2) {
		emit(d, (unsigned char)(d->acc >> 4));
	} else if (d->nbits_count == 3) {
		emit(d, (unsigned char)(d->acc >> 10));
		emit(d, (unsigned char)(d->acc >> 2));
	}
	d->nbits_count = 0;
	d->acc = 0;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10; /* RFC 2045 6.7 (1): lowercase tolerated */
	return -1;
}

static void qp_flush_ws(struct mime_decoder *d)
{
	emit_n(d, d->ws, d->nws);
	d->nws = 0;
}

static void qp_byte(struct mime_decoder *d, unsigned char c)
{
	for (;;) {
		switch (d->qs) {
		case QP_TEXT:
			if (c == ' ' || c == '\t') {
				if (d->nws == sizeof(d->ws))
					qp_flush_ws(d);
				d->ws[d->nws++] = (char)c;
				return;
			}
			if (c == '\r') {
				d->qs = QP_CR;
				return;
			}
			if (c == '\n') {
				d->nws = 0; /* trailing whitespace is deleted */
				emit(d, '\n');
				return;
			}
			qp_flush_ws(d);
			if (c == '=') {
				d->qs = QP_EQ;
				return;
			}
			emit(d, c);
			return;
		case QP_CR:
			d->qs = QP_TEXT;
			if (c == '\n') {
				d->nws = 0;
				emit(d, '\r');
				emit(d, '\n');
				return;
			}
			qp_flush_ws(d);
			emit(d, '\r');
			continue; /* reprocess c */
		case QP_EQ:
			if (hexval(c) >= 0) {
				d->hex1 = c;
				d->qs = QP_EQ_HEX;
				return;
			}
			if (c == '\r') {
				d->eq_before_cr = true;
				d->qs = QP_EQ_WS;
				return;
			}
			if (c == '\n') { /* soft line break */
				d->qs = QP_TEXT;
				return;
			}
			if (c == ' ' || c == '\t') {
				d->ws[d->nws++] = (char)c;
				d->qs = QP_EQ_WS;
				return;
			}
			emit(d, '='); /* invalid: keep literally */
			d->qs = QP_TEXT;
			continue;
		case QP_EQ_HEX:
			d->qs = QP_TEXT;
			if (hexval(c) >= 0) {
				emit(d, (unsigned char)(hexval(d->hex1) * 16 + hexval(c)));
				return;
			}
			emit(d, '=');
			emit(d, d->hex1);
			continue;
		case QP_EQ_WS:
			/* "=" then whitespace (padding) then a line break is
			 * a soft line break (RFC 2045 6.7 rule 3 and 5) */
			if (c == '\n') {
				d->nws = 0;
				d->eq_before_cr = false;
				d->qs = QP_TEXT;
				return;
			}
			if (!d->eq_before_cr && (c == ' ' || c == '\t') && d->nws < sizeof(d->ws)) {
				d->ws[d->nws++] = (char)c;
				return;
			}
			if (c == '\r' && !d->eq_before_cr) {
				d->eq_before_cr = true;
				return;
			}
			emit(d, '=');
			qp_flush_ws(d);
			if (d->eq_before_cr)
				emit(d, '\r');
			d->eq_before_cr = false;
			d->qs = QP_TEXT;
			continue;
		}
	}
}

static void qp_finish(struct mime_decoder *d)
{
	switch (d->qs) {
	case QP_TEXT:
		break; /* whitespace at the very end is trailing: deleted */
	case QP_CR:
		emit(d, '\r');
		break;
	case QP_EQ:
		break; /* "=" at the end: a soft break with no line after */
	case QP_EQ_HEX:
		emit(d, '=');
		emit(d, d->hex1);
		break;
	case QP_EQ_WS:
		break;
	}
	d->nws = 0;
	d->qs = QP_TEXT;
}

int mime_decoder_feed(struct mime_decoder *d, const void *data, size_t len,
		      int (*out)(void *ctx, const void *data, size_t len), void *out_ctx)
{
	d->cb = out;
	d->cb_ctx = out_ctx;
	const unsigned char *s = data;
	switch (d->cte) {
	case MIME_CTE_BASE64:
		b64_feed(d, s, len);
		break;
	case MIME_CTE_QP:
		for (size_t i = 0; i < len; i++)
			qp_byte(d, s[i]);
		break;
	default:
		flush_out(d);
		if (len > 0 && !d->cb_failed && out(out_ctx, data, len) < 0)
			d->cb_failed = true;
		break;
	}
	flush_out(d);
	return d->cb_failed ? -1 : 0;
}

int mime_decoder_finish(struct mime_decoder *d, int (*out)(void *ctx, const void *data, size_t len),
			void *out_ctx)
{
	d->cb = out;
	d->cb_ctx = out_ctx;
	if (d->cte == MIME_CTE_BASE64)
		b64_finish(d);
	else if (d->cte == MIME_CTE_QP)
		qp_finish(d);
	flush_out(d);
	return d->cb_failed ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* RFC 2047                                                            */

static int buf_out(void *ctx, const void *data, size_t len)
{
	mime_buf_append(ctx, data, len);
	return 0;
}

/* Recognises an encoded word at s (RFC 2047 2): "=?" charset "?" B|Q "?"
 * text "?=", no whitespace inside. Returns its length or 0. */
static size_t encoded_word(const char *s, size_t len, const char **cs, size_t *cs_len,
			   char *enc, const char **text, size_t *text_len)
{
	if (len < 8 || s[0] != '=' || s[1] != '?')
		return 0;
	size_t i = 2;
	while (i < len && s[i] != '?' && s[i] > ' ' && (unsigned char)s[i] < 0x7f)
		i++;
	if (i >= len || s[i] != '?' || i == 2)
		return 0;
	*cs = s + 2;
	*cs_len = i - 2;
	if (i + 2 >= len || s[i + 2] != '?')
		return 0;
	char e = s[i + 1];
	if (e == 'b' || e == 'B')
		*enc = 'B';
	else if (e == 'q' || e == 'Q')
		*enc = 'Q';
	else
		return 0;
	size_t t = i + 3;
	size_t j = t;
	while (j + 1 < len && !(s[j] == '?' && s[j + 1] == '=')) {
		if (s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\n')
			return 0;
		j++;
	}
	if (j + 1 >= len)
		return 0;
	*text = s + t;
	*text_len = j - t;
	return j + 2;
}

static void decode_word_bytes(char enc, const char *text, size_t len, struct mime_buf *raw)
{
	if (enc == 'B') {
		struct mime_decoder d = { .cte = MIME_CTE_BASE64 };
		mime_decoder_feed(&d, text, len, buf_out, raw);
		mime_decoder_finish(&d, buf_out, raw);
		return;
	}
	/* RFC 2047 4.2: "_" is space, =XX a byte */
	for (size_t i = 0; i < len; i++) {
		int h, l;
		if (text[i] == '_') {
			mime_buf_putc(raw, ' ');
		} else if (text[i] == '=' && i + 2 < len &&
			   (h = hexval((unsigned char)text[i + 1])) >= 0 &&
			   (l = hexval((unsigned char)text[i + 2])) >= 0) {
			mime_buf_putc(raw, (char)(h * 16 + l));
			i += 2;
		} else {
			mime_buf_putc(raw, text[i]);
		}
	}
}

struct hdr_decode {
	struct mime_buf out, raw, tmp;
	const char *cs; /* charset of the pending words, NULL if none */
	size_t cs_len;
	const char *src_start, *src_end; /* their source text */
};

/* Appends plain header text: unfolded, invalid UTF-8 replaced. */
static void emit_plain(struct hdr_decode *h, const char *s, size_t n)
{
	mime_buf_reset(&h->tmp);
	mime_unfold(&h->tmp, s, n, false);
	size_t sl;
	char *t = mime_charset_utf8_sanitize(mime_buf_cstr(&h->tmp), h->tmp.len, &sl);
	if (t == NULL)
		h->out.failed = true;
	else
		mime_buf_append(&h->out, t, sl);
	free(t);
}

static void flush_pending(struct hdr_decode *h)
{
	if (h->cs == NULL)
		return;
	char name[64];
	char *conv = NULL;
	size_t conv_len = 0;
	bool ok = false;
	if (h->cs_len < sizeof(name)) {
		memcpy(name, h->cs, h->cs_len);
		name[h->cs_len] = '\0';
		ok = mime_charset_to_utf8(name, mime_buf_cstr(&h->raw), h->raw.len, &conv,
					  &conv_len) == 0;
	}
	if (ok) {
		mime_buf_append(&h->out, conv, conv_len);
		free(conv);
	} else {
		/* unknown charset: the words stay as they were */
		emit_plain(h, h->src_start, (size_t)(h->src_end - h->src_start));
	}
	mime_buf_reset(&h->raw);
	h->cs = NULL;
}

char *mime_decode_header_utf8(const char *value, size_t len, size_t *len_r)
{
	struct hdr_decode h = { 0 };
	size_t i = 0, gap_start = 0;
	bool after_word = false;

	while (i < len) {
		const char *cs, *text;
		size_t cs_len, text_len;
		char enc;
		size_t wl = value[i] == '=' ? encoded_word(value + i, len - i, &cs, &cs_len, &enc,
							   &text, &text_len)
					    : 0;
		if (wl == 0) {
			i++;
			continue;
		}
		const char *gap = value + gap_start;
		size_t gap_len = i - gap_start;
		bool only_ws = true;
		for (size_t k = 0; k < gap_len && only_ws; k++)
			only_ws = gap[k] == ' ' || gap[k] == '\t' || gap[k] == '\r' || gap[k] == '\n';
		/* RFC 2047 6.2: whitespace between adjacent encoded words is
		 * not displayed */
		if (!(after_word && only_ws)) {
			flush_pending(&h);
			emit_plain(&h, gap, gap_len);
		}
		/* words in the same charset are decoded together, so that a
		 * character split across two words survives */
		if (h.cs != NULL && !(cs_len == h.cs_len && strncasecmp(cs, h.cs, cs_len) == 0))
			flush_pending(&h);
		if (h.cs == NULL) {
			h.cs = cs;
			h.cs_len = cs_len;
			h.src_start = value + i;
		}
		decode_word_bytes(enc, text, text_len, &h.raw);
		i += wl;
		h.src_end = value + i;
		gap_start = i;
		after_word = true;
	}
	flush_pending(&h);
	emit_plain(&h, value + gap_start, len - gap_start);
	mime_buf_free(&h.raw);
	mime_buf_free(&h.tmp);
	return mime_buf_steal(&h.out, len_r);
}
