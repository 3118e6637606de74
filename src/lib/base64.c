/* base64.c: strict RFC 4648 base64; see base64.h. */
#include "lib/base64.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void base64_encode(const void *data, size_t len, char *out)
{
	const unsigned char *p = data;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? alphabet[v & 63] : '=';
	}
	out[o] = '\0';
}

int base64_value(unsigned char c, char c63)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == (unsigned char)c63)
		return 63;
	return -1;
}

static int val(char c)
{
	return base64_value((unsigned char)c, '/');
}

long base64_decode(const char *in, size_t len, unsigned char *out)
{
	size_t o = 0;
	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int a = val(in[i]), b = val(in[i + 1]);
		int last = i + 4 == len;
		int pad2 = last && in[i + 2] == '=' && in[i + 3] == '=';
		int pad1 = last && !pad2 && in[i + 3] == '=';
		int c = pad2 ? 0 : val(in[i + 2]);
		int d = pad1 || pad2 ? 0 : val(in[i + 3]);
		if (a < 0 || b < 0 || c < 0 || d < 0)
			return -1;
		unsigned v = (unsigned)(a << 18 | b << 12 | c << 6 | d);
		/* canonical: unused bits before padding must be zero */
		if ((pad2 && (v & 0xffff)) || (pad1 && (v & 0xff)))
			return -1;
		out[o++] = (unsigned char)(v >> 16);
		if (!pad2)
			out[o++] = (unsigned char)(v >> 8);
		if (!pad1 && !pad2)
			out[o++] = (unsigned char)v;
	}
	out[o] = '\0';
	return (long)o;
}
