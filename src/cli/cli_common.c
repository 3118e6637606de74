/* cli_common.c: what several subcommands share: the data folder, settings,
 * and opening the store. */
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/config.h"
#include "store/store.h"

const char *cli_default_data_dir(void)
{
	const char *d = getenv("MAILROOM_DATA");
	return d != NULL && *d != '\0' ? d : NULL;
}

int cli_open_store(const char *prog, const char *data_dir, struct config **config_r,
		   struct store **store_r)
{
	struct error err;

	if (data_dir == NULL) {
		fprintf(stderr, "mailroom %s: no data folder: give -d DATA (or set MAILROOM_DATA)\n",
			prog);
		return EX_USAGE;
	}
	if (config_load(data_dir, NULL, 0, config_r, &err) < 0) {
		fprintf(stderr, "mailroom %s: %s\n", prog, err.text);
		return EX_CONFIG;
	}
	if (store_open(data_dir, *config_r, store_r, &err) < 0) {
		fprintf(stderr, "mailroom %s: %s\n", prog, err.text);
		config_free(config_r);
		return err.code == ERR_TEMP || err.code == ERR_NOSPACE ? EX_TEMPFAIL : EX_NOINPUT;
	}
	return 0;
}

int cli_become_store_owner(const char *prog, const char *data_dir)
{
	char path[4096];
	struct stat st;
	if (geteuid() != 0)
		return 0;
	snprintf(path, sizeof(path), "%s/mail", data_dir);
	if (stat(path, &st) < 0 || st.st_uid == 0)
		return 0; /* a store nobody took over yet: stay root */
	/* `mailroom serve` handed the store to run_user: files we create must
	 * be that user's, or the server could not read them. */
	gid_t gid = st.st_gid;
	if (setgroups(1, &gid) < 0 || setgid(st.st_gid) < 0 || setuid(st.st_uid) < 0) {
		fprintf(stderr, "mailroom %s: cannot take the identity of the store's owner (uid %ld)\n",
			prog, (long)st.st_uid);
		return EX_OSERR;
	}
	return 0;
}
