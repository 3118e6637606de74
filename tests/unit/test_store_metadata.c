/*
 * test_store_metadata.c: METADATA entries (store_metadata.c) against a real
 * DATA folder: set, replace and remove round trip through the plain file
 * with any bytes in values; a change is all or nothing (a value over the
 * size limit stores none of the command's entries); the per-user count
 * spans the server and every mailbox; a damaged file is an error, not an
 * empty set; a missing mailbox is NOTFOUND.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

struct fx {
	char dir[64];
	struct store *store;
	struct store_user *user;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct error err;
	strcpy(f->dir, "/tmp/mailroom-test-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(store_open(f->dir, NULL, &f->store, &err), 0);
	assert_int_equal(store_user_create(f->store, "alice", &err), 0);
	assert_int_equal(store_user_open(f->store, "alice", &f->user, &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];
	store_user_close(&f->user);
	store_close(&f->store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void set1(struct fx *f, const char *box, const char *name, const char *value, size_t len,
		 int want)
{
	struct error err;
	struct store_metadata_entry e = { (char *)(uintptr_t)name, (char *)(uintptr_t)value, len };
	assert_int_equal(store_metadata_set(f->user, box, &e, 1, &err), want);
}

static void test_round_trip(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_metadata_entry *v;
	size_t n;
	static const char bin[] = "a\0b\nc 9\n\r\n";
	set1(f, "INBOX", "/shared/z", "last", 4, 0);
	set1(f, "INBOX", "/private/a", bin, sizeof(bin), 0);
	set1(f, "INBOX", "/private/e", "", 0, 0);
	set1(f, NULL, "/shared/admin", "x", 1, 0);
	assert_int_equal(store_metadata_get(f->user, "INBOX", &v, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].name, "/private/a");
	assert_int_equal(v[0].len, sizeof(bin));
	assert_memory_equal(v[0].value, bin, sizeof(bin));
	assert_int_equal(v[1].len, 0);
	assert_string_equal(v[2].name, "/shared/z");
	store_metadata_free(v, n);
	set1(f, "INBOX", "/private/a", "new", 3, 0);
	set1(f, "INBOX", "/shared/z", NULL, 0, 0);
	set1(f, "INBOX", "/shared/never", NULL, 0, 0);
	assert_int_equal(store_metadata_get(f->user, "INBOX", &v, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].value, "new");
	store_metadata_free(v, n);
	assert_int_equal(store_metadata_get(f->user, NULL, &v, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].value, "x");
	store_metadata_free(v, n);
}

static void test_limits_all_or_nothing(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_metadata_entry *v;
	size_t n;
	uint64_t max = store_metadata_max_size(f->user);
	assert_int_equal(max, 64 * 1024);
	assert_int_equal(store_metadata_max_entries(f->user), 500);
	char *big = calloc(1, max + 1);
	struct store_metadata_entry two[2] = { { (char *)"/private/ok", (char *)"v", 1 },
					       { (char *)"/private/big", big, max + 1 } };
	assert_int_equal(store_metadata_set(f->user, "INBOX", two, 2, &err), -1);
	assert_int_equal(err.code, ERR_LIMIT);
	assert_int_equal(store_metadata_get(f->user, "INBOX", &v, &n, &err), 0);
	assert_int_equal(n, 0);
	two[1].len = max;
	assert_int_equal(store_metadata_set(f->user, "INBOX", two, 2, &err), 0);
	free(big);
	/* the count spans the server and the other mailboxes */
	assert_int_equal(store_mailbox_create(f->user, "Other", NULL, &err), 0);
	char name[32];
	for (int i = 0; i < 497; i++) {
		snprintf(name, sizeof(name), "/private/n%d", i);
		set1(f, i % 2 ? "Other" : NULL, name, "1", 1, 0);
	}
	set1(f, "INBOX", "/private/one-more", "1", 1, 0); /* 500 */
	set1(f, "INBOX", "/private/too-many", "1", 1, -1);
	set1(f, "Other", "/private/too-many", "1", 1, -1);
	set1(f, "INBOX", "/private/ok", "replaced", 8, 0);
}

static void test_damaged_and_missing(void **state)
{
	struct fx *f = *state;
	struct error err;
	struct store_metadata_entry *v;
	size_t n;
	char path[128];
	set1(f, "Nope", "/private/a", "1", 1, -1);
	assert_int_equal(store_metadata_get(f->user, "Nope", &v, &n, &err), -1);
	assert_int_equal(err.code, ERR_NOTFOUND);
	snprintf(path, sizeof(path), "%s/mail/alice/INBOX/mailroom-metadata", f->dir);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("/private/a 99\nshort\n", fp);
	fclose(fp);
	assert_int_equal(store_metadata_get(f->user, "INBOX", &v, &n, &err), -1);
	set1(f, "INBOX", "/private/b", "1", 1, -1); /* not silently overwritten */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits_all_or_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_and_missing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
