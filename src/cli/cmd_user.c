/*
 * cmd_user.c: `mailroom user add|passwd|del|list -d DATA [USER]`
 *
 * Passwords are read from the terminal with echo off (asked twice), or as
 * one line on standard input when it is not a terminal; never from argv,
 * where every user of the machine could see them in ps.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include "auth/passwd.h"
#include "cli/cli.h"
#include "lib/config.h"
#include "store/store.h"

#define MAX_PASSWORD 1024

static int read_line_noecho(const char *prompt, char *out, size_t size)
{
	struct termios old, quiet;
	int tty = isatty(STDIN_FILENO);
	if (tty) {
		fputs(prompt, stderr);
		fflush(stderr);
		if (tcgetattr(STDIN_FILENO, &old) < 0)
			return -1;
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	int ok = fgets(out, (int)size, stdin) != NULL;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	if (!ok)
		return -1;
	size_t len = strlen(out);
	if (len > 0 && out[len - 1] == '\n')
		out[--len] = '\0';
	else if (len == size - 1)
		return -1; /* too long */
	if (len > 0 && out[len - 1] == '\r')
		out[--len] = '\0';
	return 0;
}

static int read_password(char *out, size_t size)
{
	char again[MAX_PASSWORD];
	if (read_line_noecho("Password: ", out, size) < 0) {
		fprintf(stderr, "mailroom user: no password given (or longer than %d bytes)\n",
			MAX_PASSWORD - 1);
		return -1;
	}
	if (out[0] == '\0') {
		fprintf(stderr, "mailroom user: empty password refused\n");
		return -1;
	}
	if (isatty(STDIN_FILENO)) {
		if (read_line_noecho("Again: ", again, sizeof(again)) < 0 || strcmp(out, again) != 0) {
			fprintf(stderr, "mailroom user: the passwords differ\n");
			explicit_bzero(again, sizeof(again));
			return -1;
		}
		explicit_bzero(again, sizeof(again));
	}
	return 0;
}

static void print_user(void *ctx, const struct passwd_entry *e)
{
	(void)ctx;
	const char *scheme_end = e->hash[0] == '{' ? strchr(e->hash, '}') : NULL;
	if (scheme_end != NULL)
		printf("%s\t%.*s\n", e->user, (int)(scheme_end - e->hash + 1), e->hash);
	else
		printf("%s\t{CRYPT}\n", e->user);
}

int cmd_user(int argc, char **argv)
{
	static const struct option longopts[] = { { "yes", no_argument, NULL, 'y' },
						  { "purge", no_argument, NULL, 'p' },
						  { "scheme", required_argument, NULL, 's' },
						  { NULL, 0, NULL, 0 } };
	const char *usage = "usage: mailroom user add -d DATA [--scheme S] USER\n"
			    "       mailroom user passwd -d DATA [--scheme S] USER\n"
			    "       mailroom user del -d DATA --yes [--purge] USER\n"
			    "       mailroom user list -d DATA\n";
	const char *data = cli_default_data_dir();
	const char *scheme = "YESCRYPT";
	int yes = 0, purge = 0, c, rc;
	struct config *config = NULL;
	struct store *store = NULL;
	struct error err;
	char path[4096];
	char password[MAX_PASSWORD];
	char *hash = NULL;
	struct error why;

	if (argc < 2) {
		fputs(usage, stderr);
		return EX_USAGE;
	}
	const char *op = argv[1];
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "d:", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': data = optarg; break;
		case 'y': yes = 1; break;
		case 'p': purge = 1; break;
		case 's': scheme = optarg; break;
		default: fputs(usage, stderr); return EX_USAGE;
		}
	}
	int is_list = strcmp(op, "list") == 0;
	if ((is_list && optind != argc) || (!is_list && optind + 1 != argc) ||
	    (!is_list && strcmp(op, "add") != 0 && strcmp(op, "passwd") != 0 &&
	     strcmp(op, "del") != 0)) {
		fputs(usage, stderr);
		return EX_USAGE;
	}
	rc = cli_open_store("user", data, &config, &store);
	if (rc != 0)
		return rc;
	snprintf(path, sizeof(path), "%s/passwd", data);
	if (is_list) {
		if (passwd_file_foreach(path, print_user, NULL) < 0 && errno != ENOENT) {
			fprintf(stderr, "mailroom user: cannot read %s: %s\n", path, strerror(errno));
			rc = EX_NOINPUT;
		}
		goto out;
	}
	const char *user = argv[optind];
	if (store_username_valid(user) < 0) {
		fprintf(stderr, "mailroom user: invalid user name '%s' (1-64 bytes; no '/', ':', '\\', "
				"spaces or control characters; no leading '.')\n", user);
		rc = EX_DATAERR;
		goto out;
	}
	if (strcmp(op, "del") == 0) {
		if (!yes) {
			fprintf(stderr, "mailroom user del: this removes %s's login; add --yes to confirm%s\n",
				user, purge ? " (and --purge deletes the mail)" : " (the mail is kept)");
			rc = EX_USAGE;
			goto out;
		}
		if (passwd_file_update(path, PASSWD_DELETE, user, NULL, &why) < 0) {
			fprintf(stderr, "mailroom user del: %s: %s\n", user, why.text);
			rc = why.code == ERR_NOUSER ? EX_NOUSER : EX_IOERR;
			goto out;
		}
		if ((rc = cli_become_store_owner("user", data)) != 0)
			goto out;
		if (purge && store_user_purge(store, user, &err) < 0 && err.code != ERR_NOUSER) {
			fprintf(stderr, "mailroom user del: %s: %s\n", user, err.text);
			rc = EX_IOERR;
			goto out;
		}
		/* Mail kept: mark the folder, for a `deliver` that cannot read
		 * DATA/passwd (cmd_deliver.c). */
		if (!purge && store_user_mark_deleted(store, user, 1, &err) < 0) {
			fprintf(stderr, "mailroom user del: %s: %s\n", user, err.text);
			rc = EX_IOERR;
			goto out;
		}
		printf("deleted user %s%s\n", user, purge ? " and their mail" : " (mail kept)");
		goto out;
	}
	if (read_password(password, sizeof(password)) < 0) {
		rc = EX_DATAERR;
		goto out;
	}
	int hr = passwd_hash(password, scheme, &hash, &why);
	explicit_bzero(password, sizeof(password));
	if (hr < 0) {
		fprintf(stderr, "mailroom user: %s\n", why.text);
		rc = EX_USAGE;
		goto out;
	}
	if (strcmp(op, "add") == 0) {
		if (passwd_file_update(path, PASSWD_ADD, user, hash, &why) < 0) {
			fprintf(stderr, "mailroom user add: %s: %s\n", user, why.text);
			rc = why.code == ERR_EXISTS ? EX_CANTCREAT : EX_IOERR;
			goto out;
		}
		if ((rc = cli_become_store_owner("user", data)) != 0)
			goto out;
		if ((store_user_create(store, user, &err) < 0 && err.code != ERR_EXISTS) ||
		    store_user_mark_deleted(store, user, 0, &err) < 0) {
			fprintf(stderr, "mailroom user add: %s: %s\n", user, err.text);
			passwd_file_update(path, PASSWD_DELETE, user, NULL, &why);
			rc = EX_IOERR;
			goto out;
		}
		printf("added user %s\n", user);
	} else {
		if (passwd_file_update(path, PASSWD_REPLACE, user, hash, &why) < 0) {
			fprintf(stderr, "mailroom user passwd: %s: %s\n", user, why.text);
			rc = why.code == ERR_NOUSER ? EX_NOUSER : EX_IOERR;
			goto out;
		}
		printf("changed the password of %s\n", user);
	}
out:
	free(hash);
	store_close(&store);
	config_free(&config);
	return rc;
}
