/*
 * cmd_deliver.c: `mailroom deliver -d DATA [-m MAILBOX] USER...`
 *
 * Reads one message on standard input and delivers it to every USER (single
 * instance: one file, one link per user). For MTAs that pipe (Postfix's
 * mailbox_command, procmail-style setups), the exit status follows
 * sysexits.h:
 *   0  delivered to every user
 *   65 EX_DATAERR   empty or too large message
 *   67 EX_NOUSER    unknown user (and no temporary failure)
 *   75 EX_TEMPFAIL  disk full, I/O error, lock timeout, DATA/passwd cannot
 *                   be read, or over quota when quota_full_tempfail = yes
 *   77 EX_NOPERM    over quota (permanent), as dovecot-lda does
 * With several users, a temporary failure for any of them wins: the MTA
 * retries, and a duplicate for the others beats a lost message. MTAs that
 * deliver to many users at once should use LMTP, which reports per user.
 *
 * A user is a recipient only if DATA/passwd lists them (as for LMTP): a
 * mail folder left by `mailroom user del` is not enough. The CLI reads the
 * file itself (there is no auth process to ask), before it takes the
 * store owner's identity: as root it can read a passwd file that only root
 * may read. A file that cannot be read (a symbolic link, not a regular
 * file, an I/O error) is EX_TEMPFAIL, never EX_NOUSER; no file at all is no
 * users, as for the server. A listed user without a mail folder is
 * EX_NOUSER, as before (`mailroom user add` makes the folder).
 *
 * Run without root (Postfix's pipe(8) refuses user=root; the store owner
 * is the usual choice), deliver may not read DATA/passwd (0600, the
 * password hashes): then it goes by the mail folder and the mark that
 * `mailroom user del` leaves in it (store_user_mark_deleted): a marked or
 * missing folder is EX_NOUSER. Only a hand-edited passwd escapes this; LMTP,
 * which asks the auth process, is exact.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "auth/passwd.h"
#include "cli/cli.h"
#include "lib/config.h"
#include "store/store.h"

static int exit_code(const struct store *store, enum error_code code)
{
	switch (code) {
	case ERR_OK:
		return 0;
	case ERR_NOUSER:
		return EX_NOUSER;
	case ERR_QUOTA:
		return store_quota_is_temporary(store) ? EX_TEMPFAIL : EX_NOPERM;
	case ERR_DATA:
	case ERR_LIMIT:
		return EX_DATAERR;
	default:
		return EX_TEMPFAIL;
	}
}

/* Which failure decides the exit status: temporary first (see above). */
static int worse(int a, int b)
{
	static const int order[] = { EX_TEMPFAIL, EX_NOPERM, EX_NOUSER, EX_DATAERR, 0 };
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (a == order[i] || b == order[i])
			return order[i];
	return a ? a : b;
}

/* For each of the n users: 0 if DATA/passwd lists them, BY_FOLDER if it
 * cannot be read for want of permission (see the note at the top), else
 * the exit status they get (EX_NOUSER, EX_TEMPFAIL), said on stderr. */
#define BY_FOLDER (-1)
static void check_users(const char *data, char *const *users, size_t n, int *codes)
{
	char path[4096];
	struct passwd_entry *e = malloc(sizeof(*e));
	snprintf(path, sizeof(path), "%s/passwd", data);
	for (size_t i = 0; i < n; i++) {
		int r = e != NULL ? passwd_file_lookup(path, users[i], e) : -1;
		if (r == 1) {
			codes[i] = 0;
		} else if (r == 0) {
			fprintf(stderr, "mailroom deliver: %s: no such user\n", users[i]);
			codes[i] = EX_NOUSER;
		} else if (e != NULL && errno == EACCES && geteuid() != 0) {
			codes[i] = BY_FOLDER; /* decided by the folder and its mark */
		} else {
			fprintf(stderr, "mailroom deliver: %s: cannot read %s: %s\n", users[i], path,
				e != NULL ? strerror(errno) : "out of memory");
			codes[i] = EX_TEMPFAIL;
		}
	}
	if (e != NULL)
		explicit_bzero(e, sizeof(*e));
	free(e);
}

int cmd_deliver(int argc, char **argv)
{
	int *known = NULL;
	size_t nknown = 0;
	const char *data = cli_default_data_dir();
	const char *mailbox = NULL;
	struct config *config = NULL;
	struct store *store = NULL;
	struct store_stage *stage = NULL;
	struct store_rcpt *rcpts = NULL;
	struct error err;
	int c, rc;
	static char buf[65536];

	while ((c = getopt(argc, argv, "d:m:")) != -1) {
		switch (c) {
		case 'd': data = optarg; break;
		case 'm': mailbox = optarg; break;
		default:
			fprintf(stderr, "usage: mailroom deliver -d DATA [-m MAILBOX] USER...\n");
			return EX_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: mailroom deliver -d DATA [-m MAILBOX] USER...\n");
		return EX_USAGE;
	}
	size_t nusers = (size_t)(argc - optind);
	known = calloc(nusers, sizeof(*known));
	if (known == NULL) {
		fprintf(stderr, "mailroom deliver: out of memory\n");
		return EX_TEMPFAIL;
	}
	struct stat st;
	if (data != NULL && stat(data, &st) == 0 && S_ISDIR(st.st_mode)) {
		/* Before becoming the store owner, who may not read it. (No
		 * data folder at all is for cli_open_store to report: its
		 * missing passwd must not read as "no such user".) */
		check_users(data, argv + optind, nusers, known);
	}
	for (size_t i = 0; i < nusers; i++)
		nknown += known[i] == 0 || known[i] == BY_FOLDER;
	rc = 0;
	for (size_t i = 0; i < nusers; i++)
		if (known[i] != BY_FOLDER)
			rc = worse(rc, known[i]);
	if (data != NULL && nknown == 0) {
		free(known);
		return rc; /* nobody to deliver to: the message is not read */
	}
	rc = data ? cli_become_store_owner("deliver", data) : 0;
	if (rc != 0) {
		free(known);
		return rc;
	}
	rc = cli_open_store("deliver", data, &config, &store);
	if (rc != 0) {
		free(known);
		return rc;
	}
	for (size_t i = 0; i < nusers; i++) {
		if (known[i] != BY_FOLDER)
			continue;
		known[i] = 0;
		if (store_user_is_marked_deleted(store, argv[optind + (int)i])) {
			fprintf(stderr, "mailroom deliver: %s: no such user (deleted)\n",
				argv[optind + (int)i]);
			known[i] = EX_NOUSER;
			nknown--;
		}
	}
	if (nknown == 0) {
		rc = 0;
		for (size_t i = 0; i < nusers; i++)
			rc = worse(rc, known[i]);
		goto out; /* nobody left: the message is not read */
	}
	uint64_t limit = config_uint(config, "message_size_limit");

	if (store_stage_new(store, &stage, &err) < 0)
		goto fail;
	for (;;) {
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "mailroom deliver: cannot read the message: %s\n", strerror(errno));
			rc = EX_TEMPFAIL;
			goto out;
		}
		if (n == 0)
			break;
		if (store_stage_write(stage, buf, (size_t)n, &err) < 0)
			goto fail;
		if (limit != 0 && store_stage_size(stage) > limit) {
			fprintf(stderr, "mailroom deliver: message larger than message_size_limit (%llu bytes)\n",
				(unsigned long long)limit);
			rc = EX_DATAERR;
			goto out;
		}
	}
	if (store_stage_size(stage) == 0) {
		fprintf(stderr, "mailroom deliver: empty message\n");
		rc = EX_DATAERR;
		goto out;
	}
	if (store_stage_finish(stage, &err) < 0)
		goto fail;

	rcpts = calloc(nknown, sizeof(*rcpts));
	if (rcpts == NULL) {
		fprintf(stderr, "mailroom deliver: out of memory\n");
		rc = EX_TEMPFAIL;
		goto out;
	}
	rc = 0;
	size_t nr = 0;
	for (size_t i = 0; i < nusers; i++) {
		rc = worse(rc, known[i]); /* the users DATA/passwd did not list */
		if (known[i] != 0)
			continue;
		rcpts[nr].user = argv[optind + (int)i];
		rcpts[nr].mailbox = mailbox;
		nr++;
	}
	store_deliver(store, stage, 0, rcpts, nr);
	for (size_t i = 0; i < nr; i++) {
		if (rcpts[i].result.code == ERR_OK)
			continue;
		fprintf(stderr, "mailroom deliver: %s: %s\n", rcpts[i].user, rcpts[i].result.text);
		rc = worse(rc, exit_code(store, rcpts[i].result.code));
	}
	goto out;
fail:
	fprintf(stderr, "mailroom deliver: %s\n", err.text);
	rc = exit_code(store, err.code);
out:
	free(known);
	free(rcpts);
	store_stage_free(&stage);
	store_close(&store);
	config_free(&config);
	return rc;
}
