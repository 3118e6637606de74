/* fuzz_config.c: DATA/mailroom.conf can hold anything an admin (or an
 * editor's crash) writes: the reader answers with an error or a config,
 * never a crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[128];
	if (dir[0] == '\0') {
		strcpy(dir, "/tmp/mailroom-fuzz-config-XXXXXX");
		if (mkdtemp(dir) == NULL)
			abort();
	}
	snprintf(path, sizeof(path), "%s/mailroom.conf", dir);
	FILE *f = fopen(path, "w");
	if (f == NULL)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	struct config *c = NULL;
	struct error err;
	if (config_load(dir, NULL, 0, &c, &err) == 0) {
		(void)config_uint(c, "quota_bytes");
		(void)config_str(c, "imap_listen");
		config_free(&c);
	} else if (err.code == ERR_OK || err.text[0] == '\0') {
		abort();
	}
	return 0;
}
