/* fuzz_store_names.c: mailbox names and maildir file names, the two parsers
 * the store applies to names it did not make. Properties checked:
 *  - a name the store accepts maps to a directory with no '/', not "." or
 *    "..", and back to the same (normalised) name;
 *  - a directory name either is not a mailbox or round-trips exactly;
 *  - a parsed maildir file name rebuilds to one that parses the same. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	struct error err;
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	char *dir = NULL, *back = NULL, *norm = NULL;
	if (store_name_to_dir(s, &dir, &err) == 0) {
		if (strchr(dir, '/') != NULL || strcmp(dir, ".") == 0 || strcmp(dir, "..") == 0 ||
		    strlen(dir) > 255 || strncmp(dir, "tmp-", 4) == 0)
			abort();
		if (store_mailbox_name_normalize(s, &norm, &err) < 0)
			abort();
		if (store_name_from_dir(dir, &back) < 0 || strcmp(back, norm) != 0)
			abort();
	}
	free(dir);
	free(back);
	free(norm);
	back = NULL;
	if (store_name_from_dir(s, &back) == 0) {
		char *again = NULL;
		if (store_name_to_dir(back, &again, &err) < 0 || strcmp(again, s) != 0)
			abort();
		free(again);
	}
	free(back);

	struct store_fname f, g;
	if (store_fname_parse(s, &f) == 0) {
		char name[512];
		if (store_fname_build(&f, name, sizeof(name)) == 0) {
			if (store_fname_parse(name, &g) < 0 || g.uid != f.uid || g.flags != f.flags ||
			    g.keywords != f.keywords || g.size != f.size || strcmp(g.base, f.base) != 0)
				abort();
		}
	}
	free(s);
	return 0;
}
