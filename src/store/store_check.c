/*
 * store_check.c: `mailroom check`: compare a user's index with the files,
 * and with repair, make the index match them (rebuilding it if it is gone
 * or damaged).
 *
 * The comparison is the reconcile of store_sync.c run over every mailbox in
 * dry mode (report only); repair runs it for real. On top of that: index rows
 * of mailboxes that no longer exist, the quota counters against the sum of
 * the messages, and leftovers of interrupted operations (tmp-create.* and
 * tmp-delete.* folders in the user's root, old staging files in spool/tmp).
 *
 * Two kinds of findings, kept apart because an admin acts on one and not
 * the other:
 *  - crash residue: what an interrupted operation leaves by design (a
 *    pending index row of a delivery killed between its link and its last
 *    commit, a tmp-create.* or tmp-delete.* folder, an old staging file).
 *    It is resolved in both modes, as the store itself does on the next
 *    open of the mailbox (or as only garbage can be), and said in a
 *    "recovered: ..." line; it is not a problem.
 *  - damage: everything else (files changed behind the index's back, a
 *    damaged index.sqlite or mailroom-box, wrong quota counters). Without
 *    repair it is reported and left alone (no heal: store->no_heal); with
 *    repair it is fixed (the heals of store_index.c and store_box.c, which
 *    any open would also do) and counted in problems.
 */
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct check_ctx {
	struct store_user *user;
	struct store_sync_report rep;
	int repair;
	struct error *err;
	int failed;
};

static void report(struct check_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(struct check_ctx *c, const char *fmt, ...)
{
	char line[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	c->rep.problems++;
	if (c->rep.say != NULL)
		c->rep.say(c->rep.ctx, line);
}

static void recovered(struct check_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void recovered(struct check_ctx *c, const char *fmt, ...)
{
	char line[600];
	va_list ap;
	va_start(ap, fmt);
	int n = snprintf(line, sizeof(line), "recovered: ");
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	c->rep.recovered++;
	if (c->rep.say != NULL)
		c->rep.say(c->rep.ctx, line);
}

/* Damage found and not healed (check without --repair), if any: a problem. */
static int report_damage(struct check_ctx *c, struct store *store)
{
	if (!store->no_heal)
		return 0;
	if (store->damage[0] == '\0' && c->user != NULL && c->user->ix_damaged)
		snprintf(store->damage, sizeof(store->damage), "index.sqlite is damaged (%.200s)",
			 c->user->ix_damage);
	if (store->damage[0] == '\0')
		return 0;
	report(c, "%s; `mailroom check --repair` (or the next login or delivery) moves it aside and"
		  " rebuilds it from the files",
	       store->damage);
	store->damage[0] = '\0';
	return 1;
}

/* A heal during repair (store_index_note_heal): damage fixed. */
static void healed(void *ctx, const char *line)
{
	report(ctx, "%s", line);
}

static int check_mailbox(void *ctx, const struct store_mailbox_info *info)
{
	struct check_ctx *c = ctx;
	struct store_mailbox *mbox = NULL;

	if (store_mailbox_open_nosync(c->user, info->name, &mbox, c->err) < 0) {
		if (report_damage(c, c->user->store))
			return 0;
		c->failed = 1;
		return 1;
	}
	if (store_lock_mailbox(mbox, c->err) < 0 ||
	    store_sync_run(mbox, 1, &c->rep, c->err) < 0) {
		if (!report_damage(c, c->user->store))
			c->failed = 1;
	}
	store_mailbox_close(&mbox);
	return c->failed;
}

/* Rows of mailboxes that are no longer on disk. */
static int check_stale_rows(struct check_ctx *c)
{
	struct store_user *user = c->user;
	sqlite3_stmt *st = store_index_stmt(user, "SELECT name FROM mailbox ORDER BY name", c->err);
	char **stale = NULL;
	size_t n = 0;
	int ret = 0;

	if (st == NULL)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		char *dir;
		struct error e;
		if (store_name_to_dir(name, &dir, &e) == 0) {
			int exists = faccessat(user->root_fd, dir, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
			free(dir);
			if (exists)
				continue;
		}
		char **p = realloc(stale, (n + 1) * sizeof(*p));
		if (p == NULL)
			break;
		stale = p;
		stale[n] = strdup(name);
		if (stale[n] != NULL)
			n++;
	}
	sqlite3_reset(st);
	for (size_t i = 0; i < n; i++) {
		report(c, "index has mailbox %s, which is not on disk", stale[i]);
		if (c->repair && ret == 0) {
			ret = store_index_exec(user, c->err,
					       "UPDATE meta SET value=max(0, value-(SELECT coalesce(sum(size),0) FROM msg WHERE mailbox=(SELECT id FROM mailbox WHERE name=%Q))) WHERE key='quota_bytes';"
					       "UPDATE meta SET value=max(0, value-(SELECT count(*) FROM msg WHERE mailbox=(SELECT id FROM mailbox WHERE name=%Q))) WHERE key='quota_messages';"
					       "DELETE FROM msg WHERE mailbox=(SELECT id FROM mailbox WHERE name=%Q);"
					       "DELETE FROM expunged WHERE mailbox=(SELECT id FROM mailbox WHERE name=%Q);"
					       "DELETE FROM mailbox WHERE name=%Q",
					       stale[i], stale[i], stale[i], stale[i], stale[i]);
		}
		free(stale[i]);
	}
	free(stale);
	return ret;
}

/* The bytes of the extra links of files linked more than once, as qfile's
 * triggers should have counted them (store_index.c). */
static int check_quota_dup(struct check_ctx *c)
{
	struct store_user *user = c->user;
	int64_t qd = 0, sd = 0;
	sqlite3_stmt *st = store_index_stmt(
		user,
		"SELECT coalesce(sum(n * s - s), 0) FROM (SELECT count(*) AS n, max(size) AS s"
		" FROM msg WHERE pending=0 GROUP BY " STORE_FNAME_BASE_SQL("fname") ")",
		c->err);
	if (st == NULL)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		sd = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (store_index_meta_get(user, "quota_dup_bytes", &qd) < 0) {
		store_index_sqlerr(user, c->err, "quota");
		return -1;
	}
	if (qd == sd)
		return 0;
	report(c, "quota counts %lld bytes of extra links, the links add up to %lld", (long long)qd,
	       (long long)sd);
	if (!c->repair)
		return 0;
	return store_index_exec(user, c->err, "%s", store_index_qfile_fill);
}

static int check_quota(struct check_ctx *c)
{
	struct store_user *user = c->user;
	int64_t qb = 0, qm = 0, sb = 0, sm = 0;
	sqlite3_stmt *st = store_index_stmt(
		user, "SELECT coalesce(sum(size),0), count(*) FROM msg WHERE pending=0", c->err);
	if (st == NULL)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW) {
		sb = sqlite3_column_int64(st, 0);
		sm = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	if (store_index_meta_get(user, "quota_bytes", &qb) < 0 ||
	    store_index_meta_get(user, "quota_messages", &qm) < 0) {
		store_index_sqlerr(user, c->err, "quota");
		return -1;
	}
	if (check_quota_dup(c) < 0)
		return -1;
	if (qb == sb && qm == sm)
		return 0;
	report(c, "quota usage is %lld bytes / %lld messages, the messages add up to %lld / %lld",
	       (long long)qb, (long long)qm, (long long)sb, (long long)sm);
	if (!c->repair)
		return 0;
	if (store_index_meta_set(user, "quota_bytes", sb, c->err) < 0 ||
	    store_index_meta_set(user, "quota_messages", sm, c->err) < 0)
		return -1;
	return 0;
}

/* tmp-create.* and tmp-delete.* folders: made and removed under the
 * user-root lock, so any seen while holding it are residue of a crash. */
static void check_leftovers(struct check_ctx *c)
{
	struct error lock_err;
	if (store_lock_user(c->user, &lock_err) < 0) {
		report(c, "cannot look for leftovers of mailbox operations: %s", lock_err.text);
		return;
	}
	int fd = dup(c->user->root_fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		store_lock_user_release(c->user);
		return;
	}
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "tmp-create.", 11) != 0 &&
		    strncmp(de->d_name, "tmp-delete.", 11) != 0)
			continue;
		if (store_remove_tree(c->user->root_fd, de->d_name, 0) < 0)
			report(c, "leftover of an interrupted mailbox operation: %s (cannot remove it)",
			       de->d_name);
		else
			recovered(c, "leftover of an interrupted mailbox operation removed: %s",
				  de->d_name);
	}
	closedir(d);
	store_lock_user_release(c->user);
}

int store_check_user(struct store *store, const char *username, int repair,
		     void (*say_cb)(void *ctx, const char *line), void *ctx, unsigned *problems_r,
		     struct error *err)
{
	struct check_ctx c;
	memset(&c, 0, sizeof(c));
	c.repair = repair;
	c.err = err;
	c.rep.dry = !repair;
	c.rep.residue = 1;
	c.rep.say = say_cb;
	c.rep.ctx = ctx;

	store->no_heal = !repair;
	store->damage[0] = '\0';
	store->heal_say = repair ? healed : NULL;
	store->heal_ctx = &c;
	int ret = -1;
	if (store_user_open(store, username, &c.user, err) < 0) {
		if (report_damage(&c, store))
			ret = 0;
		goto out;
	}
	if (store_mailbox_list(c.user, check_mailbox, &c, err) < 0 || c.failed)
		goto out;
	if (check_stale_rows(&c) < 0 || check_quota(&c) < 0) {
		if (report_damage(&c, store))
			ret = 0;
		goto out;
	}
	check_leftovers(&c);
	/* Every mailbox is in the index now (store_user.c's rebuild_all). */
	if (repair && store_index_meta_set(c.user, "complete", 1, err) < 0)
		goto out;
	ret = 0;
out:
	*problems_r = c.rep.problems;
	store_user_close(&c.user);
	store->no_heal = 0;
	store->heal_say = NULL;
	store->heal_ctx = NULL;
	return ret;
}

/* Staging files older than this that no process holds are leftovers of
 * killed deliveries (the maildir convention for tmp/ is 36 hours). */
#define SPOOL_STALE_SECONDS (36 * 3600)

int store_check_spool(struct store *store, int repair, void (*say_cb)(void *ctx, const char *line),
		      void *ctx, unsigned *problems_r, struct error *err)
{
	(void)repair; /* residue goes either way */
	int fd = dup(store->spool_fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	unsigned problems = 0;
	time_t now = time(NULL);
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		error_errno(err, "cannot read spool/tmp");
		return -1;
	}
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		if (de->d_name[0] == '.' ||
		    fstatat(store->spool_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || now - st.st_mtime < SPOOL_STALE_SECONDS)
			continue;
		int f = openat(store->spool_fd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (f < 0)
			continue;
		if (flock(f, LOCK_EX | LOCK_NB) == 0) {
			/* Crash residue (see the note at the top): removed with or
			 * without repair; only a failure to remove it is a problem. */
			char line[400];
			int gone = unlinkat(store->spool_fd, de->d_name, 0) == 0;
			problems += !gone;
			snprintf(line, sizeof(line), "%sspool/tmp/%.300s: leftover of an interrupted delivery%s",
				 gone ? "recovered: " : "", de->d_name, gone ? ", removed" : " (cannot remove it)");
			if (say_cb != NULL)
				say_cb(ctx, line);
		}
		close(f);
	}
	closedir(d);
	*problems_r = problems;
	return 0;
}
