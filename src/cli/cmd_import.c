/*
 * cmd_import.c: `mailroom import -d DATA [--dry-run] [--password-file F] USER SOURCE`
 *               `mailroom import -d DATA [--dry-run] [--password-file F] --all SOURCE`
 *
 * Moves one user's mail (or, with --all, every user's of DATA/passwd, SOURCE
 * containing %u for the user name) in from another store, keeping
 * UIDVALIDITY, UIDs, flags, keywords, INTERNALDATE, POP3 UIDLs and
 * subscriptions, so that no client downloads anything again (import.h,
 * src/import/import_core.c). SOURCE picks the driver by its prefix:
 * dovecot:PATH, courier:PATH, mbox:PATH, imap://[LOGIN@]HOST[:PORT] and
 * imaps://... (LOGIN defaults to the user; the password comes from
 * --password-file only, never from the command line, where ps shows it).
 *
 * Run as root, it reads what needs root (DATA/passwd, the password file)
 * first, then takes the store owner's identity (cli_become_store_owner) so
 * that every file it makes is the server's; source files that owner cannot
 * read or may not link are reported.
 *
 * Output: the report (stdout, one line each: folders, skips with their
 * reason, copies with why they were not linked, size differences), on a
 * terminal a progress line on stderr, and always a summary line:
 *   imported N messages (L linked, C copied) in F folders, A already there, S skipped, T s
 * Exit (sysexits): EX_USAGE bad arguments; EX_NOINPUT the source is
 * missing or unreadable; EX_DATAERR it is not of its format; EX_TEMPFAIL
 * store or disk trouble; EX_OK otherwise (skips are reported, not fatal).
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "auth/passwd.h"
#include "cli/cli.h"
#include "import/import_core.h"
#include "lib/config.h"
#include "store/store.h"

enum src_kind { SRC_DOVECOT, SRC_COURIER, SRC_MBOX, SRC_IMAP, SRC_IMAPS };

/* SOURCE prefix -> driver. */
static const struct {
	const char *prefix;
	enum src_kind kind;
	int (*local)(const char *path, const struct import_sink *sink, struct error *err);
} sources[] = {
	{ "dovecot:", SRC_DOVECOT, import_dovecot },
	{ "courier:", SRC_COURIER, import_courier },
	{ "mbox:", SRC_MBOX, import_mbox },
	{ "imap://", SRC_IMAP, NULL },
	{ "imaps://", SRC_IMAPS, NULL },
};

struct run {
	const char *data;
	int dry_run;
	char *password; /* NULL unless --password-file */
	struct store *store;
	struct import_core_counts total;
	int tty;
	struct timespec start;
	struct timespec last_progress;
	const char *cur_user;
	int owner_known; /* run_user, for a store not handed over yet */
	uid_t owner_uid;
	gid_t owner_gid;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: mailroom import -d DATA [--dry-run] [--password-file F] USER SOURCE\n"
		   "       mailroom import -d DATA [--dry-run] [--password-file F] --all SOURCE\n"
		   "  SOURCE: dovecot:PATH  courier:PATH  mbox:PATH\n"
		   "          imap://[LOGIN@]HOST[:PORT]  imaps://[LOGIN@]HOST[:PORT][?tls-verify=no]\n"
		   "  Keeps UIDVALIDITY, UIDs, flags, keywords, dates, POP3 UIDLs and subscriptions;\n"
		   "  hard-links message files on the same file system. Safe to run again (what is\n"
		   "  there is skipped) and while the server runs. --all: every user of DATA/passwd,\n"
		   "  SOURCE containing %%u for the user name. The IMAP password is read from the\n"
		   "  --password-file (first line), never from the command line. --dry-run prints\n"
		   "  what would happen and writes nothing.\n");
}

static double since(const struct timespec *a)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - a->tv_sec) + (double)(now.tv_nsec - a->tv_nsec) / 1e9;
}

static void progress(void *ctx, const struct import_core_counts *c)
{
	struct run *r = ctx;
	if (!r->tty || since(&r->last_progress) < 0.2)
		return;
	clock_gettime(CLOCK_MONOTONIC, &r->last_progress);
	double t = since(&r->start);
	uint64_t n = r->total.imported + c->imported;
	fprintf(stderr, "\r\033[K%s: %llu imported, %llu already there, %llu skipped, %.0f messages/s",
		r->cur_user, (unsigned long long)n, (unsigned long long)(r->total.already + c->already),
		(unsigned long long)(r->total.skipped + c->skipped), t > 0 ? (double)n / t : 0.0);
}

static void add_counts(struct import_core_counts *t, const struct import_core_counts *c)
{
	t->imported += c->imported;
	t->linked += c->linked;
	t->copied += c->copied;
	t->streamed += c->streamed;
	t->already += c->already;
	t->skipped += c->skipped;
	t->folders += c->folders;
	t->subscriptions += c->subscriptions;
	t->size_mismatches += c->size_mismatches;
}

static void summary(const char *prefix, const struct import_core_counts *c, int dry, double secs)
{
	if (c->subscriptions > 0 || c->size_mismatches > 0)
		printf("%s%llu subscriptions, %llu size differences\n", prefix,
		       (unsigned long long)c->subscriptions, (unsigned long long)c->size_mismatches);
	printf("%s%s %llu messages (%llu %s, %llu %s) in %llu folders, %llu already there, %llu skipped, %.1f s\n",
	       prefix, dry ? "dry run: would import" : "imported", (unsigned long long)c->imported,
	       (unsigned long long)c->linked, dry ? "to link" : "linked",
	       (unsigned long long)(c->copied + c->streamed), dry ? "to copy" : "copied",
	       (unsigned long long)c->folders, (unsigned long long)c->already,
	       (unsigned long long)c->skipped, secs);
}

/* ---- SOURCE ----------------------------------------------------------------------- */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Decode %XX in place (a login with '@' or ':' written as %40, %3A). */
static int pct_decode(char *s)
{
	char *o = s;
	for (char *p = s; *p != '\0'; p++) {
		if (*p == '%') {
			int h = hexval(p[1]), l = h < 0 ? -1 : hexval(p[2]);
			if (l < 0 || (h == 0 && l == 0))
				return -1;
			*o++ = (char)(h * 16 + l);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return 0;
}

/* "[LOGIN@]HOST[:PORT][?tls-verify=no]" (after the scheme), into buf (modified). */
static int parse_imap(char *buf, const char *user, struct import_imap_source *src)
{
	char *query = strchr(buf, '?');
	if (query != NULL) {
		*query++ = '\0';
		if (strcmp(query, "tls-verify=no") == 0)
			src->tls_no_verify = 1;
		else if (strcmp(query, "tls-verify=yes") != 0)
			return -1;
	}
	char *at = strrchr(buf, '@');
	char *host = buf;
	src->login = user;
	if (at != NULL) {
		*at = '\0';
		if (pct_decode(buf) < 0 || buf[0] == '\0')
			return -1;
		src->login = buf;
		host = at + 1;
	}
	char *slash = strchr(host, '/');
	if (slash != NULL) {
		if (slash[1] != '\0')
			return -1; /* no path part */
		*slash = '\0';
	}
	char *port = NULL;
	if (host[0] == '[') {
		char *close = strchr(host, ']');
		if (close == NULL)
			return -1;
		*close = '\0';
		host++;
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return -1;
	} else {
		char *colon = strchr(host, ':');
		if (colon != NULL) {
			*colon = '\0';
			port = colon + 1;
		}
	}
	if (host[0] == '\0')
		return -1;
	src->host = host;
	src->port = 0;
	if (port != NULL) {
		char *end;
		unsigned long p = strtoul(port, &end, 10);
		if (port[0] == '\0' || *end != '\0' || p == 0 || p > 65535)
			return -1;
		src->port = (unsigned)p;
	}
	return 0;
}

/* SOURCE with each %u replaced by user (and %% by %). */
static char *expand(const char *source, const char *user)
{
	size_t n = strlen(source) + 1;
	for (const char *p = source; *p; p++)
		if (p[0] == '%' && p[1] == 'u')
			n += strlen(user);
	char *out = malloc(n);
	if (out == NULL)
		return NULL;
	char *o = out;
	for (const char *p = source; *p; p++) {
		if (p[0] == '%' && p[1] == 'u') {
			o = stpcpy(o, user);
			p++;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

static int find_source(const char *source)
{
	for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
		if (strncmp(source, sources[i].prefix, strlen(sources[i].prefix)) == 0)
			return (int)i;
	return -1;
}

static int exit_of(const struct error *err)
{
	switch (err->code) {
	case ERR_NOTFOUND: return EX_NOINPUT;
	case ERR_DATA:
	case ERR_INVALID: return EX_DATAERR;
	case ERR_NOUSER: return EX_NOUSER;
	default: return EX_TEMPFAIL;
	}
}

/* ---- one user ------------------------------------------------------------------------- */

static int import_user(struct run *r, const char *user, const char *source, int all)
{
	int si = find_source(source);
	char *spec = NULL;
	struct import_core *core = NULL;
	struct error err;
	int rc = EX_OK;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r->cur_user = user;

	spec = strdup(source + strlen(sources[si].prefix));
	if (spec == NULL) {
		fprintf(stderr, "mailroom import: out of memory\n");
		return EX_TEMPFAIL;
	}
	struct import_imap_source isrc = { 0 };
	if (sources[si].local == NULL) {
		if (parse_imap(spec, user, &isrc) < 0) {
			fprintf(stderr, "mailroom import: %s: not imap[s]://[LOGIN@]HOST[:PORT][?tls-verify=no]\n", source);
			rc = EX_USAGE;
			goto out;
		}
		isrc.tls = sources[si].kind == SRC_IMAPS;
		isrc.password = r->password;
	} else {
		struct stat st;
		if (spec[0] == '\0') {
			fprintf(stderr, "mailroom import: %s: no path\n", source);
			rc = EX_USAGE;
			goto out;
		}
		if (stat(spec, &st) < 0) {
			fprintf(stderr, "mailroom import: %s: %s: %s%s\n", user, spec, strerror(errno),
				all ? " (user skipped)" : "");
			rc = EX_NOINPUT;
			goto out;
		}
	}
	struct import_core_opts o = { user, r->dry_run, stdout, progress, r,
				      r->owner_known, r->owner_uid, r->owner_gid };
	if (import_core_new(r->store, &o, &core, &err) < 0) {
		fprintf(stderr, "mailroom import: %s: %s\n", user, err.text);
		rc = exit_of(&err);
		goto out;
	}
	const struct import_sink *sink = import_core_sink(core);
	int dr = sources[si].local != NULL ? sources[si].local(spec, sink, &err)
					   : import_imap(&isrc, sink, &err);
	struct error ferr;
	int fr = import_core_finish(core, &ferr);
	if (r->tty)
		fprintf(stderr, "\r\033[K");
	if (dr < 0) {
		fprintf(stderr, "mailroom import: %s: %s: %s\n", user, source, err.text);
		rc = exit_of(&err);
	}
	if (fr < 0) {
		fprintf(stderr, "mailroom import: %s: %s\n", user, ferr.text);
		if (rc == EX_OK)
			rc = exit_of(&ferr);
	}
	const struct import_core_counts *c = import_core_counts(core);
	if (all) {
		char prefix[100];
		snprintf(prefix, sizeof(prefix), "%s: ", user);
		summary(prefix, c, r->dry_run, since(&t0));
	}
	add_counts(&r->total, c);
out:
	import_core_free(&core);
	free(spec);
	return rc;
}

/* ---- arguments, users, password -------------------------------------------------------- */

struct user_list {
	char **v;
	size_t n;
	int failed;
};

static void collect_user(void *ctx, const struct passwd_entry *e)
{
	struct user_list *l = ctx;
	char **p = realloc(l->v, (l->n + 1) * sizeof(*p));
	if (p == NULL || (p[l->n] = strdup(e->user)) == NULL) {
		if (p != NULL)
			l->v = p;
		l->failed = 1;
		return;
	}
	l->v = p;
	l->n++;
}

/* The first line of the password file. Warns when others may read it. */
static int read_password(const char *path, char **pw_r)
{
	FILE *f = fopen(path, "re");
	struct stat st;
	if (f == NULL) {
		fprintf(stderr, "mailroom import: %s: %s\n", path, strerror(errno));
		return EX_NOINPUT;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0)
		fprintf(stderr, "mailroom import: warning: %s can be read by others (mode %03o); "
				"chmod 600 it\n",
			path, (unsigned)(st.st_mode & 0777));
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	fclose(f);
	if (n <= 0) {
		free(line);
		fprintf(stderr, "mailroom import: %s: empty\n", path);
		return EX_DATAERR;
	}
	line[strcspn(line, "\r\n")] = '\0';
	*pw_r = line;
	return 0;
}

int cmd_import(int argc, char **argv)
{
	static const struct option longopts[] = { { "dry-run", no_argument, NULL, 'n' },
						  { "password-file", required_argument, NULL, 'p' },
						  { "all", no_argument, NULL, 'a' },
						  { "help", no_argument, NULL, 'h' },
						  { NULL, 0, NULL, 0 } };
	struct run r;
	const char *pwfile = NULL;
	int all = 0, c, rc = EX_OK;
	struct config *config = NULL;
	struct user_list users = { 0 };

	memset(&r, 0, sizeof(r));
	r.data = cli_default_data_dir();
	optind = 1;
	while ((c = getopt_long(argc, argv, "hd:", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': r.data = optarg; break;
		case 'n': r.dry_run = 1; break;
		case 'p': pwfile = optarg; break;
		case 'a': all = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EX_USAGE;
		}
	}
	int nargs = argc - optind;
	if (nargs != (all ? 1 : 2)) {
		usage(stderr);
		return EX_USAGE;
	}
	const char *source = argv[argc - 1];
	const char *user = all ? NULL : argv[optind];
	int si = find_source(source);
	if (si < 0) {
		fprintf(stderr, "mailroom import: %s: unknown source (dovecot:PATH, courier:PATH, "
				"mbox:PATH, imap://..., imaps://...)\n",
			source);
		return EX_USAGE;
	}
	if (all && strstr(source, "%u") == NULL) {
		fprintf(stderr, "mailroom import: --all: SOURCE must contain %%u (the user name)\n");
		return EX_USAGE;
	}
	if (!all && store_username_valid(user) < 0) {
		fprintf(stderr, "mailroom import: %s: not a valid user name\n", user);
		return EX_USAGE;
	}
	if (sources[si].local == NULL && pwfile == NULL) {
		fprintf(stderr, "mailroom import: an IMAP source needs --password-file\n");
		return EX_USAGE;
	}
	if (r.data == NULL) {
		fprintf(stderr, "mailroom import: no data folder: give -d DATA (or set MAILROOM_DATA)\n");
		return EX_USAGE;
	}

	/* What root must read, before giving root up. */
	if (pwfile != NULL && (rc = read_password(pwfile, &r.password)) != 0)
		return rc;
	char passwd[4096];
	snprintf(passwd, sizeof(passwd), "%s/passwd", r.data);
	if (all) {
		if (passwd_file_foreach(passwd, collect_user, &users) < 0 || users.failed) {
			fprintf(stderr, "mailroom import: %s: %s\n", passwd,
				users.failed ? "out of memory" : strerror(errno));
			rc = users.failed ? EX_TEMPFAIL : EX_NOINPUT;
			goto out;
		}
	} else {
		struct passwd_entry e;
		if (passwd_file_lookup(passwd, user, &e) != 1)
			fprintf(stderr, "mailroom import: warning: %s is not in %s (its mail is imported; "
					"add it with `mailroom user add`)\n",
				user, passwd);
	}
	if ((rc = cli_become_store_owner("import", r.data)) != 0)
		goto out;
	if ((rc = cli_open_store("import", r.data, &config, &r.store)) != 0)
		goto out;

	/* Still root: the store has not been handed to run_user yet, which
	 * the server's first start does (chowning what is not run_user's). */
	struct passwd *pw = geteuid() == 0 ? getpwnam(config_str(config, "run_user")) : NULL;
	if (pw != NULL) {
		r.owner_known = 1;
		r.owner_uid = pw->pw_uid;
		r.owner_gid = pw->pw_gid;
	}
	r.tty = isatty(STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &r.start);
	if (all) {
		for (size_t i = 0; i < users.n; i++) {
			char *src = expand(source, users.v[i]);
			if (src == NULL) {
				rc = EX_TEMPFAIL;
				break;
			}
			int ur = import_user(&r, users.v[i], src, 1);
			free(src);
			fflush(stdout);
			/* a user whose source is missing is reported and skipped */
			if (ur != EX_OK && ur != EX_NOINPUT && rc == EX_OK)
				rc = ur;
			if (ur == EX_TEMPFAIL)
				break;
		}
	} else {
		rc = import_user(&r, user, source, 0);
	}
	summary("", &r.total, r.dry_run, since(&r.start));
	if (r.total.skipped > 0)
		printf("%llu skipped: see the lines \"skipped:\" above\n",
		       (unsigned long long)r.total.skipped);
out:
	for (size_t i = 0; i < users.n; i++)
		free(users.v[i]);
	free(users.v);
	if (r.password != NULL) {
		explicit_bzero(r.password, strlen(r.password));
		free(r.password);
	}
	store_close(&r.store);
	config_free(&config);
	return rc;
}
