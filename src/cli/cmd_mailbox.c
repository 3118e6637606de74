/*
 * cmd_mailbox.c: `mailroom mailbox list|create|delete|rename -d DATA USER ...`
 * for admins: the same operations IMAP clients have, on any user.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "cli/cli.h"
#include "lib/config.h"
#include "store/store.h"

static int exit_for(enum error_code code)
{
	switch (code) {
	case ERR_NOUSER: return EX_NOUSER;
	case ERR_NOTFOUND: return EX_NOINPUT;
	case ERR_EXISTS: return EX_CANTCREAT;
	case ERR_INVALID: return EX_DATAERR;
	case ERR_TEMP: return EX_TEMPFAIL;
	case ERR_NOSPACE: return EX_TEMPFAIL;
	default: return EX_SOFTWARE;
	}
}

static int print_mailbox(void *ctx, const struct store_mailbox_info *info)
{
	struct store_user *user = ctx;
	struct store_mailbox *mbox = NULL;
	struct error err;
	struct store_status st;
	if (store_mailbox_open(user, info->name, &mbox, &err) == 0 &&
	    store_mailbox_status(mbox, &st, &err) == 0)
		printf("%s%s%s\tmessages=%u unseen=%u size=%llu uidvalidity=%u uidnext=%u highestmodseq=%llu\n",
		       info->name, info->special_use ? " " : "",
		       info->special_use ? info->special_use : "", st.messages, st.unseen,
		       (unsigned long long)st.size, st.uidvalidity, st.uidnext,
		       (unsigned long long)st.highestmodseq);
	else
		printf("%s\t(cannot open: %s)\n", info->name, err.text);
	store_mailbox_close(&mbox);
	return 0;
}

int cmd_mailbox(int argc, char **argv)
{
	const char *usage = "usage: mailroom mailbox list -d DATA USER\n"
			    "       mailroom mailbox create -d DATA USER NAME\n"
			    "       mailroom mailbox delete -d DATA USER NAME\n"
			    "       mailroom mailbox rename -d DATA USER OLD NEW\n";
	const char *data = cli_default_data_dir();
	struct config *config = NULL;
	struct store *store = NULL;
	struct store_user *user = NULL;
	struct error err;
	int c, rc;

	if (argc < 2) {
		fputs(usage, stderr);
		return EX_USAGE;
	}
	const char *op = argv[1];
	argc--;
	argv++;
	while ((c = getopt(argc, argv, "d:")) != -1) {
		if (c != 'd') {
			fputs(usage, stderr);
			return EX_USAGE;
		}
		data = optarg;
	}
	int nargs = argc - optind;
	int want = strcmp(op, "list") == 0 ? 1 : strcmp(op, "rename") == 0 ? 3 :
		   (strcmp(op, "create") == 0 || strcmp(op, "delete") == 0) ? 2 : -1;
	if (want < 0 || nargs != want) {
		fputs(usage, stderr);
		return EX_USAGE;
	}
	rc = data ? cli_become_store_owner("mailbox", data) : 0;
	if (rc != 0)
		return rc;
	rc = cli_open_store("mailbox", data, &config, &store);
	if (rc != 0)
		return rc;
	if (store_user_open(store, argv[optind], &user, &err) < 0)
		goto fail;
	if (strcmp(op, "list") == 0) {
		if (store_mailbox_list(user, print_mailbox, user, &err) < 0)
			goto fail;
	} else if (strcmp(op, "create") == 0) {
		if (store_mailbox_create(user, argv[optind + 1], NULL, &err) < 0)
			goto fail;
	} else if (strcmp(op, "delete") == 0) {
		if (store_mailbox_delete(user, argv[optind + 1], &err) < 0)
			goto fail;
	} else if (store_mailbox_rename(user, argv[optind + 1], argv[optind + 2], &err) < 0) {
		goto fail;
	}
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "mailroom mailbox %s: %s\n", op, err.text);
	rc = exit_for(err.code);
out:
	store_user_close(&user);
	store_close(&store);
	config_free(&config);
	return rc;
}
