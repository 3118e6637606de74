/* fuzz_passwd.c: the DATA/passwd line parser and hash verification must
 * take any bytes: no crash, no read outside the input, no leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passwd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct passwd_entry *e = malloc(sizeof(*e));
	struct error why;
	if (e == NULL)
		return 0;
	if (passwd_line_parse((const char *)data, size, e, &why) == 0) {
		/* What comes out is bounded and NUL-terminated. */
		if (strlen(e->user) >= sizeof(e->user) || strchr(e->user, ':') != NULL)
			abort();
		/* Verification of an arbitrary stored value never crashes. Skip
		 * the slow KDFs with high cost parameters a fuzzer can write. */
		if (strstr(e->hash, "$y$") == NULL && strstr(e->hash, "$2") == NULL &&
		    strstr(e->hash, "rounds=") == NULL)
			(void)passwd_verify(e->hash, "password", 1);
	}
	free(e);
	return 0;
}
