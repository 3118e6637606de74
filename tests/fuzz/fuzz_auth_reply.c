/*
 * fuzz_auth_reply.c: the reply message from the auth process
 * (auth_client_reply_parse, auth_client.h) must take any bytes: no crash,
 * no read outside the input, and what it accepts is a reply the protocol
 * allows.
 *
 * The input is parsed from a heap copy of exactly its size. Invariants of an
 * accepted reply: the input is at most AUTH_MAX_MSG bytes; the result is one
 * of the five; the id is not 0; the user is set only when ok, 1 to
 * AUTH_CLIENT_MAX_USER bytes without control characters, NUL-terminated
 * within the struct; and formatting the parsed reply gives back the input
 * byte for byte (there is one spelling per reply, so nothing is accepted
 * that the auth process would not have sent).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *msg = malloc(size ? size : 1);
	struct auth_client_reply r;
	unsigned id;
	struct error why = {ERR_OK, ""};
	char buf[AUTH_MAX_MSG + 1];
	size_t len;

	if (msg == NULL)
		return 0;
	memcpy(msg, data, size);
	if (auth_client_reply_parse(msg, size, &id, &r, &why) < 0) {
		if (why.code != ERR_INVALID)
			abort();
		free(msg);
		return 0;
	}
	if (size > AUTH_MAX_MSG || id == 0)
		abort();
	switch (r.result) {
	case AUTH_CLIENT_OK: {
		size_t ulen = strnlen(r.user, sizeof(r.user));
		if (ulen == 0 || ulen > AUTH_CLIENT_MAX_USER)
			abort();
		for (size_t i = 0; i < ulen; i++)
			if ((unsigned char)r.user[i] < 0x20 || r.user[i] == 0x7f)
				abort();
		break;
	}
	case AUTH_CLIENT_FAILED:
	case AUTH_CLIENT_RATE_LIMITED:
	case AUTH_CLIENT_TEMPFAIL:
	case AUTH_CLIENT_LIMIT:
		if (r.user[0] != '\0')
			abort();
		break;
	default:
		abort();
	}
	if (auth_client_reply_format(id, &r, buf, sizeof(buf), &len) < 0 || len != size ||
	    memcmp(buf, data, size) != 0)
		abort();
	free(msg);
	return 0;
}
