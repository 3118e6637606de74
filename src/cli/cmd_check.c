/*
 * cmd_check.c: `mailroom check -d DATA [--repair] [USER...]`
 *
 * Verifies each user's index against the files (all users when none is
 * named) and prints every difference. With --repair it fixes the index
 * (rebuilding a deleted or damaged one: same UIDs, flags, keywords,
 * UIDVALIDITY and UIDNEXT; modseqs no lower than before; a damaged
 * index.sqlite or mailroom-box is kept, renamed NAME.corrupt-<UTC time>),
 * then checks again.
 *
 * Crash residue versus damage (store_check.c). The choice made for a check
 * without --repair: it changes nothing a client could see and heals no
 * damage, but it does complete interrupted work, exactly what the next open
 * of the mailbox by any session or delivery would do anyway (a delivery
 * killed after its link into cur/ is completed, one killed before is
 * dropped), and it removes the leftovers of interrupted operations. Each
 * such line starts with "recovered: " and does not make the store
 * inconsistent: after a crash in the designed window, `check` prints the
 * recovered lines and "USER: ok" and exits 0. Damage is reported and makes
 * it print "USER: INCONSISTENT" and exit 1.
 *
 * Exit 0 when the store is (now) consistent, 1 when problems remain, other
 * sysexits codes when it cannot check.
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

static void usage(FILE *f)
{
	fprintf(f, "usage: mailroom check -d DATA [--repair] [USER...]\n"
		   "  Compares each user's index with the mail files. Damage is reported\n"
		   "  (\"USER: INCONSISTENT\", exit 1) and, without --repair, left alone.\n"
		   "  Work that a crash interrupted is completed either way, as the next\n"
		   "  login or delivery would do (lines \"recovered: ...\"; exit 0).\n"
		   "  --repair fixes the damage: the index is brought in line with the files;\n"
		   "  a damaged index.sqlite or mailroom-box is kept as NAME.corrupt-TIME and\n"
		   "  rebuilt from the files with the same UIDVALIDITY, UIDs, flags and keywords.\n");
}

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
						  { "help", no_argument, NULL, 'h' },
						  { NULL, 0, NULL, 0 } };
	const char *data = cli_default_data_dir();
	int repair = 0, c, rc = 0;
	struct config *config = NULL;
	struct store *store = NULL;

	while ((c = getopt_long(argc, argv, "hd:", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': data = optarg; break;
		case 'r': repair = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EX_USAGE;
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
	} else if (stale > 0) {
		rc = 1; /* staging leftovers that could not be removed */
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
