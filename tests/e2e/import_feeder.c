/*
 * import_feeder.c: a stand-in source driver for the tests and the bench of
 * the import sink (src/import/import_core.c), until the real drivers land.
 * Test code only: compiled by tests/e2e/test_import_core.py and
 * bench/import/run against build/libmailroom.a, never part of `mailroom`.
 *
 *   import_feeder [-n] DATA USER SPEC
 *
 * SPEC is a text file of tab-separated lines, each one call of the sink as a
 * driver makes it (import.h):
 *   folder  NAME UIDVALIDITY UIDNEXT
 *   file    PATH UID FLAGS DATE SIZE UIDL KEYWORDS   (msg_file; has_uid first)
 *   stream  PATH UID FLAGS DATE SIZE UIDL KEYWORDS   (msg_begin/write/end, 7 bytes a write)
 *   dir     PATH                                     (msg_file of every file in PATH,
 *                                                     named by its UID, in UID order)
 *   end                                              (folder_end)
 *   subscribe NAME
 *   skip    WHAT REASON
 * FLAGS is STORE_F_* as a number; DATE -1 for unknown; SIZE 0 for unknown;
 * UIDL and KEYWORDS "-" for none, KEYWORDS separated by spaces. -n: dry run.
 * Prints the sink's report, then one line of counts:
 *   counts imported=N linked=L copied=C streamed=S already=A skipped=K folders=F subscriptions=B sizes=M
 * Exit 0, or 1 with the error when a sink call failed. Run as root on a
 * store the server has taken over, it takes the store owner's identity
 * first, as `mailroom import` does (cli_become_store_owner); on one it has
 * not, it names the default run_user (mail) as the owner-to-be, as the
 * command names the configured one.
 */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "import/import_core.h"
#include "store/store.h"

static int split(char *line, char **f, int max)
{
	int n = 0;
	line[strcspn(line, "\n")] = '\0';
	for (char *p = line; n < max;) {
		f[n++] = p;
		char *t = strchr(p, '\t');
		if (t == NULL)
			break;
		*t = '\0';
		p = t + 1;
	}
	return n;
}

static int by_uid(const struct dirent **a, const struct dirent **b)
{
	unsigned long x = strtoul((*a)->d_name, NULL, 10), y = strtoul((*b)->d_name, NULL, 10);
	return x < y ? -1 : x > y;
}

static int feed_dir(const struct import_sink *s, const char *path, struct error *err)
{
	struct dirent **names;
	int n = scandir(path, &names, NULL, by_uid);
	int dfd = open(path, O_RDONLY | O_DIRECTORY);
	int ret = 0;
	if (n < 0 || dfd < 0) {
		error_set(err, ERR_NOTFOUND, "%s: cannot read", path);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.' && ret == 0) {
			struct import_msg m = { 0 };
			m.uid = (uint32_t)strtoul(names[i]->d_name, NULL, 10);
			m.internaldate = -1;
			m.id = names[i]->d_name;
			if (!s->has_uid(s->ctx, m.uid))
				ret = s->msg_file(s->ctx, &m, dfd, names[i]->d_name, err);
		}
		free(names[i]);
	}
	free(names);
	close(dfd);
	return ret;
}

static int feed_msg(const struct import_sink *s, char **f, int n, int stream, struct error *err)
{
	if (n < 8) {
		error_set(err, ERR_INVALID, "spec: a message line has 8 fields");
		return -1;
	}
	struct import_msg m = { 0 };
	const char *kw[32];
	size_t nkw = 0;
	m.uid = (uint32_t)strtoul(f[2], NULL, 10);
	m.flags = (uint32_t)strtoul(f[3], NULL, 10);
	m.internaldate = strtoll(f[4], NULL, 10);
	m.size = strtoull(f[5], NULL, 10);
	m.pop3_uidl = strcmp(f[6], "-") == 0 ? NULL : f[6];
	if (strcmp(f[7], "-") != 0)
		for (char *p = strtok(f[7], " "); p != NULL && nkw < 32; p = strtok(NULL, " "))
			kw[nkw++] = p;
	m.keywords = kw;
	m.nkeywords = nkw;
	m.id = f[1];
	if (m.uid != 0 && s->has_uid(s->ctx, m.uid))
		return 0;
	if (!stream)
		return s->msg_file(s->ctx, &m, AT_FDCWD, f[1], err);
	FILE *in = fopen(f[1], "rb");
	if (in == NULL) {
		s->skip(s->ctx, f[1], "cannot open");
		return 0;
	}
	char buf[7];
	size_t r;
	int ret = s->msg_begin(s->ctx, &m, err);
	while (ret == 0 && (r = fread(buf, 1, sizeof(buf), in)) > 0)
		ret = s->msg_write(s->ctx, buf, r, err);
	fclose(in);
	return ret == 0 ? s->msg_end(s->ctx, err) : ret;
}

int main(int argc, char **argv)
{
	int dry = argc > 1 && strcmp(argv[1], "-n") == 0;
	if (argc != 4 + dry) {
		fprintf(stderr, "usage: import_feeder [-n] DATA USER SPEC\n");
		return 2;
	}
	const char *data = argv[1 + dry], *user = argv[2 + dry];
	char mail[4096];
	struct stat mst;
	snprintf(mail, sizeof(mail), "%s/mail", data);
	if (geteuid() == 0 && stat(mail, &mst) == 0 && mst.st_uid != 0) {
		gid_t gid = mst.st_gid;
		if (setgroups(1, &gid) < 0 || setgid(mst.st_gid) < 0 || setuid(mst.st_uid) < 0) {
			perror("become the store owner");
			return 1;
		}
	}
	struct store *store;
	struct import_core *core;
	struct error err;
	if (store_open(data, NULL, &store, &err) < 0) {
		fprintf(stderr, "store: %s\n", err.text);
		return 1;
	}
	struct import_core_opts o = { .user = user, .dry_run = dry, .report = stdout };
	struct passwd *pw = geteuid() == 0 ? getpwnam("mail") : NULL; /* run_user's default */
	if (pw != NULL) {
		o.owner_known = 1;
		o.owner_uid = pw->pw_uid;
		o.owner_gid = pw->pw_gid;
	}
	if (import_core_new(store, &o, &core, &err) < 0) {
		fprintf(stderr, "core: %s\n", err.text);
		return 1;
	}
	const struct import_sink *s = import_core_sink(core);
	FILE *spec = fopen(argv[3 + dry], "r");
	char line[8192];
	int ret = spec == NULL ? -1 : 0;
	while (ret == 0 && fgets(line, sizeof(line), spec) != NULL) {
		char *f[10];
		int n = split(line, f, 10);
		if (strcmp(f[0], "folder") == 0 && n >= 4) {
			struct import_folder fo = { f[1], (uint32_t)strtoul(f[2], NULL, 10),
						    (uint32_t)strtoul(f[3], NULL, 10), NULL };
			ret = s->folder_begin(s->ctx, &fo, &err);
		} else if (strcmp(f[0], "file") == 0 || strcmp(f[0], "stream") == 0) {
			ret = feed_msg(s, f, n, f[0][0] == 's', &err);
		} else if (strcmp(f[0], "dir") == 0 && n >= 2) {
			ret = feed_dir(s, f[1], &err);
		} else if (strcmp(f[0], "end") == 0) {
			ret = s->folder_end(s->ctx, &err);
		} else if (strcmp(f[0], "subscribe") == 0 && n >= 2) {
			ret = s->subscribe(s->ctx, f[1], &err);
		} else if (strcmp(f[0], "skip") == 0 && n >= 3) {
			s->skip(s->ctx, f[1], f[2]);
		}
	}
	if (spec != NULL)
		fclose(spec);
	else
		error_set(&err, ERR_NOTFOUND, "no spec file");
	struct error ferr;
	if (import_core_finish(core, &ferr) < 0 && ret == 0) {
		err = ferr;
		ret = -1;
	}
	const struct import_core_counts *c = import_core_counts(core);
	printf("counts imported=%llu linked=%llu copied=%llu streamed=%llu already=%llu skipped=%llu"
	       " folders=%llu subscriptions=%llu sizes=%llu\n",
	       (unsigned long long)c->imported, (unsigned long long)c->linked,
	       (unsigned long long)c->copied, (unsigned long long)c->streamed,
	       (unsigned long long)c->already, (unsigned long long)c->skipped,
	       (unsigned long long)c->folders, (unsigned long long)c->subscriptions,
	       (unsigned long long)c->size_mismatches);
	import_core_free(&core);
	store_close(&store);
	if (ret < 0) {
		fprintf(stderr, "import: %s\n", err.text);
		return 1;
	}
	return 0;
}
