/*
 * cmd_export.c: `mailroom export -d DATA USER [MAILBOX...] --format
 * maildir|mbox -o OUT [--copy]`: a user's mail out of the store, for
 * backups and for leaving (formats in src/import/export.h).
 *
 * OUT must not exist (it is created) or be an empty folder: an export
 * never writes over anyone's files, and never inside DATA. Run as root on a
 * store that the server handed to its run_user, the command opens OUT
 * first, gives it to that user and then takes the user's identity (as every
 * command that opens the store does), so that what the store creates while
 * it reads stays readable by the server.
 *
 * Exit: 0; EX_USAGE; EX_NOUSER (no such user); EX_NOINPUT (no such
 * mailbox); EX_CANTCREAT (OUT exists and is not empty, cannot be created,
 * or is inside DATA); EX_DATAERR (done, but a mailbox could not be written
 * in the format and was left out: said on stderr); EX_TEMPFAIL (reading
 * the store failed: try again); EX_IOERR (writing OUT failed).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "import/export.h"
#include "lib/config.h"
#include "store/store.h"

struct progress {
	int tty;
	const char *last;
};

static void on_progress(void *ctx, const char *mailbox, uint32_t done, uint32_t total)
{
	struct progress *p = ctx;
	if (!p->tty || (done != total && (done == 0 || done % 200 != 0)))
		return;
	fprintf(stderr, "\r%s: %u/%u messages", mailbox, done, total);
	if (done == total)
		fputc('\n', stderr);
}

static void on_skip(void *ctx, const char *what, const char *reason)
{
	(void)ctx;
	fprintf(stderr, "mailroom export: left out %s: %s\n", what, reason);
}

/* OUT: created, or an existing empty folder; never inside DATA. Returns
 * the folder's fd, or -1 after a message. */
static int open_out(const char *out, const char *data, int *created_r)
{
	char real_out[PATH_MAX], real_data[PATH_MAX];
	*created_r = 0;
	if (mkdir(out, 0700) == 0) {
		*created_r = 1;
		/* the new folder's name, durable in its parent (the rest is
		 * fsynced by export_run) */
		char parent[PATH_MAX];
		snprintf(parent, sizeof(parent), "%s", out);
		int pfd = open(dirname(parent), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pfd < 0 || fsync(pfd) < 0) {
			fprintf(stderr, "mailroom export: cannot fsync the folder of %s: %s\n", out,
				strerror(errno));
			if (pfd >= 0)
				close(pfd);
			rmdir(out);
			return -1;
		}
		close(pfd);
	} else if (errno != EEXIST) {
		fprintf(stderr, "mailroom export: cannot create %s: %s\n", out, strerror(errno));
		return -1;
	}
	int fd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "mailroom export: %s: %s\n", out,
			errno == ENOTDIR ? "exists and is not a folder" : strerror(errno));
		return -1;
	}
	if (realpath(out, real_out) != NULL && realpath(data, real_data) != NULL) {
		size_t n = strlen(real_data);
		if (strncmp(real_out, real_data, n) == 0 &&
		    (real_out[n] == '\0' || real_out[n] == '/' || n == 1)) {
			fprintf(stderr, "mailroom export: %s is inside the data folder\n", out);
			close(fd);
			if (*created_r)
				rmdir(out);
			return -1;
		}
	}
	return fd;
}

/* Root exporting a store owned by its run_user: OUT becomes that user's,
 * before cli_become_store_owner takes the identity. */
static int give_out(int fd, const char *data)
{
	char path[4096];
	struct stat st;
	if (geteuid() != 0)
		return 0;
	snprintf(path, sizeof(path), "%s/mail", data);
	if (stat(path, &st) < 0 || st.st_uid == 0)
		return 0;
	if (fchown(fd, st.st_uid, st.st_gid) < 0) {
		fprintf(stderr, "mailroom export: cannot give the output folder to uid %ld: %s\n",
			(long)st.st_uid, strerror(errno));
		return -1;
	}
	return 0;
}

/* A first look, as store_user_open decides (the user's root exists), so
 * that a mistyped name costs no OUT folder; store_user_open has the last
 * word. */
static int user_exists(const char *data, const char *user)
{
	char path[4096];
	struct stat st;
	if (store_username_valid(user) != 0)
		return 0;
	snprintf(path, sizeof(path), "%s/mail/%s", data, user);
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exit_for(const struct error *err, const struct export_report *r)
{
	if (r->write_failed)
		return EX_IOERR;
	switch (err->code) {
	case ERR_NOUSER:
		return EX_NOUSER;
	case ERR_NOTFOUND:
		return EX_NOINPUT;
	case ERR_EXISTS:
		return EX_CANTCREAT;
	case ERR_INVALID:
		return EX_DATAERR;
	case ERR_TEMP:
		return EX_TEMPFAIL;
	case ERR_NOSPACE:
		return EX_TEMPFAIL;
	default:
		return EX_SOFTWARE;
	}
}

static const char usage[] =
	"usage: mailroom export -d DATA USER [MAILBOX...] --format maildir|mbox -o OUT [--copy]\n";

static int parse(int argc, char **argv, const char **data, const char **out,
		 struct export_options *opt)
{
	static const struct option longopts[] = {
		{"format", required_argument, NULL, 'f'},
		{"output", required_argument, NULL, 'o'},
		{"copy", no_argument, NULL, 'c'},
		{NULL, 0, NULL, 0},
	};
	int c, have_format = 0;
	while ((c = getopt_long(argc, argv, "d:f:o:", longopts, NULL)) != -1) {
		if (c == 'd')
			*data = optarg;
		else if (c == 'o')
			*out = optarg;
		else if (c == 'c')
			opt->copy = 1;
		else if (c == 'f' && strcmp(optarg, "maildir") == 0)
			opt->format = EXPORT_MAILDIR, have_format = 1;
		else if (c == 'f' && strcmp(optarg, "mbox") == 0)
			opt->format = EXPORT_MBOX, have_format = 1;
		else
			return -1;
	}
	if (!have_format || *out == NULL || optind >= argc)
		return -1;
	opt->mailboxes = (const char *const *)argv + optind + 1;
	opt->nmailboxes = (size_t)(argc - optind - 1);
	return 0;
}

int cmd_export(int argc, char **argv)
{
	const char *data = cli_default_data_dir(), *out = NULL;
	struct export_options opt = {0};
	struct export_report report = {0};
	struct progress prog = {.tty = isatty(2)};
	struct config *config = NULL;
	struct store *store = NULL;
	struct store_user *user = NULL;
	struct error err;
	int outfd = -1, created = 0, rc;

	if (parse(argc, argv, &data, &out, &opt) < 0) {
		fputs(usage, stderr);
		return EX_USAGE;
	}
	const char *username = argv[optind];
	if (data == NULL)
		return cli_open_store("export", data, &config, &store); /* says why */
	if (!user_exists(data, username)) {
		/* before OUT is made: once root is given up it could not be removed */
		fprintf(stderr, "mailroom export: no such user: %s\n", username);
		return EX_NOUSER;
	}
	if ((outfd = open_out(out, data, &created)) < 0)
		return EX_CANTCREAT;
	if (give_out(outfd, data) < 0) {
		rc = EX_CANTCREAT;
		goto out;
	}
	if ((rc = cli_become_store_owner("export", data)) != 0 ||
	    (rc = cli_open_store("export", data, &config, &store)) != 0)
		goto out;
	opt.progress = on_progress;
	opt.skipped = on_skip;
	opt.ctx = &prog;
	if (store_user_open(store, username, &user, &err) < 0 ||
	    export_run(user, outfd, &opt, &report, &err) < 0) {
		fprintf(stderr, "mailroom export: %s\n", err.text);
		rc = exit_for(&err, &report);
		if (report.messages > 0 || report.mailboxes > 0)
			fprintf(stderr, "mailroom export: %s holds an unfinished export\n", out);
		goto out;
	}
	printf("exported %llu messages in %u mailboxes to %s (%llu hard-linked, %llu bytes "
	       "written)\n",
	       (unsigned long long)report.messages, report.mailboxes, out,
	       (unsigned long long)report.linked, (unsigned long long)report.bytes);
	rc = report.skipped > 0 ? EX_DATAERR : 0;
out:
	if (rc != 0 && created && report.messages == 0 && report.mailboxes == 0)
		rmdir(out); /* only if still empty; never anything else */
	store_user_close(&user);
	store_close(&store);
	config_free(&config);
	if (outfd >= 0)
		close(outfd);
	return rc;
}
