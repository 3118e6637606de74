/*
 * fuzz_auth_request.c: a worker's request to the auth process
 * (auth_proc_handle, auth_proc.h; the messages V, U and E of auth_client.h)
 * must take any bytes: no crash, no read outside the input, and the answer
 * is one the protocol can carry.
 *
 * The passwd file is a fixed small table in a temporary file (PLAIN hashes,
 * so that a check costs no crypt time). Invariants: the result is -1, 0 or
 * 1; -1 and 1 (E) leave the outputs alone; 0 gives an id that is not 0, a
 * reply auth_client_reply_format() accepts, and a delay no longer than the
 * configured longest; an E or a V from two owners never leaves sessions
 * counted that cannot be ended (checked at the end of each input by ending
 * them and freeing the table under ASan).
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth_client.h"
#include "auth/auth_proc.h"
#include "lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static int open_passwd(void *ctx)
{
	(void)ctx;
	return open(path, O_RDONLY | O_CLOEXEC);
}

static void init(void)
{
	if (path[0] != '\0')
		return;
	log_init("fuzz_auth_request", 0, LOG_LVL_ERROR); /* every attempt logs at info */
	snprintf(path, sizeof(path), "/tmp/fuzz_auth_request.%ld", (long)getpid());
	FILE *f = fopen(path, "w");
	if (f == NULL)
		abort();
	fputs("alice:{PLAIN}secret\ngarbage\nbob:{PLAIN}b:::::\n", f);
	fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char owners[2] = { 'a', 'b' };
	struct auth_proc_settings set = {
		.failure_delay_ms = 10, .max_failures = 3, .allow_plain = 1,
		.failure_max_delay_ms = 40, .failure_forget_secs = 60, .ip_max_failures = 5,
		.max_userip_connections = 2, .passwd_path = "fuzz/passwd",
	};
	init();
	struct auth_proc *ap = auth_proc_new(NULL, &set, open_passwd, NULL);
	if (ap == NULL)
		return 0;
	/* The input is several requests separated by '\n' (a datagram has no
	 * separator of its own; here one byte ends each), alternately from
	 * two owners; each from a heap copy of exactly its size. */
	size_t start = 0, n = 0;
	for (size_t i = 0; i <= size; i++) {
		if (i < size && data[i] != '\n')
			continue;
		size_t len = i - start;
		char *msg = malloc(len ? len : 1);
		if (msg == NULL)
			break;
		memcpy(msg, data + start, len);
		struct auth_client_reply r, sentinel;
		unsigned id = 12345, delay = 999;
		memset(&sentinel, 0x5a, sizeof(sentinel));
		r = sentinel;
		const void *owner = &owners[n++ % 2];
		int ret = auth_proc_handle(ap, owner, msg, len, &id, &r, &delay);
		if (ret < -1 || ret > 1)
			abort();
		if (ret != 0 && (id != 12345 || delay != 999 || memcmp(&r, &sentinel, sizeof(r)) != 0))
			abort();
		if (ret == 0) {
			char buf[AUTH_MAX_MSG + 1];
			size_t blen;
			if (id == 0 || delay > set.failure_max_delay_ms ||
			    auth_client_reply_format(id, &r, buf, sizeof(buf), &blen) < 0)
				abort();
		}
		free(msg);
		start = i + 1;
	}
	auth_proc_drop_owner(ap, &owners[0]);
	auth_proc_free(&ap);
	return 0;
}
