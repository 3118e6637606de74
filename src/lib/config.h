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

#include "lib/error.h"

struct config;

/* Load DATA/mailroom.conf (a missing file means all defaults) and apply the
 * overrides ("key=value" strings). On success *config_r is owned by the
 * caller (config_free). On failure returns -1 with err set: ERR_INVALID for
 * a bad line, key or value (the text names the file and line, or the -o
 * argument, and why), ERR_TEMP when out of memory, the errno class
 * (error_errno) when the file cannot be read. */
int config_load(const char *data_dir, char *const *overrides, int n_overrides,
		struct config **config_r, struct error *err);
/* All defaults, no file; never fails except out of memory (NULL). */
struct config *config_new_defaults(void);
void config_free(struct config **config);

/* Set one key from text, validating it. Returns 0, or -1 with err set:
 * ERR_INVALID for an unknown key or a bad value (text: why, e.g. "unknown
 * setting"), ERR_TEMP when out of memory. */
int config_set(struct config *config, const char *key, const char *value, struct error *err);

/* Values; the key must be one of the table's (abort()s otherwise: a typo in
 * our own code, not user input). Strings stay valid until config_free. */
const char *config_str(const struct config *config, const char *key);
uint64_t config_uint(const struct config *config, const char *key);
int config_bool(const struct config *config, const char *key);

/* Print `key = value` for every key (all = 1) or only those that differ from
 * the default (all = 0), like postconf -n. */
void config_print(const struct config *config, FILE *out, int all);

#endif
