/* fuzz_dovecot_uidlist.c: the dovecot-uidlist parser of the Dovecot import
 * driver must take any bytes (a source tree is not trusted): no crash, no
 * read outside the input, no leak, and what it keeps is what it promises
 * (UIDs above 0 and strictly ascending, base names without '/' or ':'). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "import/import_dovecot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct import_dovecot_uidlist ul;
	struct error err;
	/* a copy of exactly size bytes: the parser must not need a NUL */
	char *copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	memset(&ul, 0, sizeof(ul));
	if (import_dovecot_uidlist_parse(copy, size, &ul, &err) == 0) {
		uint32_t prev = 0;
		if (ul.version < 1 || ul.version > 3)
			abort();
		for (size_t i = 0; i < ul.nrecs; i++) {
			const struct import_dovecot_rec *r = &ul.recs[i];
			if (r->uid <= prev || r->base[0] == '\0' || strchr(r->base, '/') != NULL ||
			    strchr(r->base, ':') != NULL)
				abort();
			prev = r->uid;
		}
		import_dovecot_uidlist_free(&ul);
	} else if (ul.nrecs != 0 || ul.recs != NULL) {
		abort();
	}
	free(copy);
	return 0;
}
