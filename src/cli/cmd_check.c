/*
 * cmd_check.c: `mailroom check -d DATA [--repair] [USER...]`
 *
 * Verifies each user's index against the files (all users when none is
 * named) and prints every difference. With --repair it fixes the index
 * (rebuilding a deleted one: same UIDs, flags, keywords, UIDVALIDITY and
 * UIDNEXT; modseqs no lower than before), then checks again. Exit 0 only when
 * the store is (now) consistent, 1 when problems remain, other sysexits codes
 * when it cannot check.
 */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "cli/cli.h"
#include "lib/config.h"
#include "store/store.h"

static void say_line(void *ctx, const char *line)
{
	printf("%s: %s\n", (const char *)ctx, line);
}

static int check_one(struct store *store, char *user, int repair)
{
	struct error err;
	unsigned problems = 0;
	if (store_check_user(store, user, repair, say_line, user, &problems, &err) < 0) {
		fprintf(stderr, "mailroom check: %s: %s\n", user, err.text);
		return err.code == ERR_NOUSER ? EX_NOUSER : EX_TEMPFAIL;
	}
	if (repair && problems > 0) {
		printf("%s: repaired %u problem(s); checking again\n", user, problems);
		if (store_check_user(store, user, 0, say_line, user, &problems, &err) < 0) {
			fprintf(stderr, "mailroom check: %s: %s\n", user, err.text);
			return EX_TEMPFAIL;
		}
	}
	printf("%s: %s\n", user, problems == 0 ? "ok" : "INCONSISTENT");
	return problems == 0 ? 0 : 1;
}

int cmd_check(int argc, char **argv)
{
	static const struct option longopts[] = { { "repair", no_argument, NULL, 'r' },
						  { NULL, 0, NULL, 0 } };
	const char *data = cli_default_data_dir();
	int repair = 0, c, rc = 0;
	struct config *config = NULL;
	struct store *store = NULL;

	while ((c = getopt_long(argc, argv, "d:", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': data = optarg; break;
		case 'r': repair = 1; break;
		default:
			fprintf(stderr, "usage: mailroom check -d DATA [--repair] [USER...]\n");
			return EX_USAGE;
		}
	}
	int open_rc = data ? cli_become_store_owner("check", data) : 0;
	if (open_rc != 0)
		return open_rc;
	open_rc = cli_open_store("check", data, &config, &store);
	if (open_rc != 0)
		return open_rc;
	struct error err;
	unsigned stale = 0;
	static char spool[] = "spool";
	if (store_check_spool(store, repair, say_line, spool, &stale, &err) < 0) {
		fprintf(stderr, "mailroom check: %s\n", err.text);
		rc = EX_TEMPFAIL;
	} else if (stale > 0 && !repair) {
		rc = 1;
	}
	if (optind < argc) {
		for (int i = optind; i < argc; i++) {
			int r = check_one(store, argv[i], repair);
			if (r != 0 && (rc == 0 || rc == 1))
				rc = r;
		}
	} else {
		char path[4096];
		snprintf(path, sizeof(path), "%s/mail", data);
		struct dirent **names = NULL;
		int n = scandir(path, &names, NULL, alphasort);
		for (int i = 0; i < n; i++) {
			if (store_username_valid(names[i]->d_name) == 0) {
				int r = check_one(store, names[i]->d_name, repair);
				if (r != 0 && (rc == 0 || rc == 1))
					rc = r;
			}
			free(names[i]);
		}
		free(names);
	}
	store_close(&store);
	config_free(&config);
	return rc;
}
