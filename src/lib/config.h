/*
 * config.h: DATA/mailroom.conf and `-o key=value` overrides.
 *
 * The file is `key = value` lines; blank lines and lines starting with '#'
 * are ignored. Every key has a default and a type in one table (config.c);
 * an unknown key or a bad value is refused with the file name, line number
 * and why. Overrides given on the command line win over the file.
 */
#ifndef MAILROOM_CONFIG_H
#define MAILROOM_CONFIG_H

#include <stdint.h>
#include <stdio.h>

struct config;

/* Load DATA/mailroom.conf (a missing file means all defaults) and apply the
 * overrides ("key=value" strings). On failure returns -1 and sets *error_r to
 * a malloc'ed message the caller frees; on success *config_r is owned by the
 * caller (config_free). */
int config_load(const char *data_dir, char *const *overrides, int n_overrides,
		struct config **config_r, char **error_r);
/* All defaults, no file; never fails except out of memory (NULL). */
struct config *config_new_defaults(void);
void config_free(struct config **config);

/* Set one key from text, validating it; -1 with *error_r (static text). */
int config_set(struct config *config, const char *key, const char *value, const char **error_r);

/* Values; the key must be one of the table's (abort()s otherwise: a typo in
 * our own code, not user input). Strings stay valid until config_free. */
const char *config_str(const struct config *config, const char *key);
uint64_t config_uint(const struct config *config, const char *key);
int config_bool(const struct config *config, const char *key);

/* Print `key = value` for every key (all = 1) or only those that differ from
 * the default (all = 0), like postconf -n. */
void config_print(const struct config *config, FILE *out, int all);

#endif
