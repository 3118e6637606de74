/*
 * config.c: the settings table and the mailroom.conf reader.
 * To add a setting, add a row to `keys`: name, type, default, and what it
 * is for. Nothing else in the program needs to know about the file format.
 */
#include "lib/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/strnum.h"

enum ctype { C_STR, C_UINT, C_SIZE, C_BOOL, C_LISTEN };

static const struct key {
	const char *name;
	enum ctype type;
	const char *def;
	const char *help;
} keys[] = {
	{ "imap_listen", C_LISTEN, "127.0.0.1:1143", "IMAP listeners (ADDR:PORT or unix:PATH, comma-separated)" },
	{ "imaps_listen", C_LISTEN, "127.0.0.1:1993", "IMAP implicit-TLS listeners" },
	{ "pop3_listen", C_LISTEN, "127.0.0.1:1110", "POP3 listeners" },
	{ "pop3s_listen", C_LISTEN, "127.0.0.1:1995", "POP3 implicit-TLS listeners" },
	{ "lmtp_listen", C_LISTEN, "127.0.0.1:2424", "LMTP listeners" },
	{ "workers", C_UINT, "0", "worker processes (0: one per core)" },
	{ "log", C_STR, "stderr", "stderr or syslog" },
	{ "quota_bytes", C_SIZE, "0", "per-user storage limit in bytes, K/M/G suffix (0: none)" },
	{ "quota_messages", C_UINT, "0", "per-user message count limit (0: none)" },
	{ "quota_full_tempfail", C_BOOL, "no", "over quota is a temporary failure (4xx, EX_TEMPFAIL)" },
	{ "lock_timeout", C_UINT, "30", "seconds to wait for a mailbox lock" },
	{ "metadata_max_size", C_SIZE, "64K", "largest IMAP METADATA value in bytes (RFC 5464)" },
	{ "metadata_max_entries", C_UINT, "500", "IMAP METADATA entries per user, server and all mailboxes" },
	{ "index_pool_size", C_UINT, "128", "idle index connections a process keeps open (one per user)" },
	{ "index_pool_seconds", C_UINT, "30", "how long an idle index connection is kept" },
	{ "message_size_limit", C_SIZE, "64M", "largest message accepted (0: none)" },
	{ "recipient_delimiter", C_STR, "+", "user+detail separator for LMTP (empty: off)" },
	{ "lmtp_local_domains", C_STR, "", "domains LMTP accepts (comma-separated; empty: any)" },
	{ "lmtp_max_recipients", C_UINT, "1000", "recipients per LMTP transaction" },
	{ "run_user", C_STR, "mail", "user the workers run as when started as root" },
	{ "auth_user", C_STR, "nobody", "user the auth process runs as when started as root" },
	{ "tls_cert", C_STR, "", "PEM certificate chain (empty: DATA/tls/cert.pem, made if missing)" },
	{ "tls_key", C_STR, "", "PEM private key (empty: DATA/tls/key.pem, made if missing)" },
	{ "plaintext_auth", C_BOOL, "no", "allow passwords on unencrypted non-loopback connections" },
	{ "auth_failure_delay_ms", C_UINT, "2000", "delay after a user's first failed login from an IP, doubling with each further one (0: no delays)" },
	{ "auth_failure_max_delay_ms", C_UINT, "15000", "longest login delay, as Dovecot's auth penalty (15 s)" },
	{ "auth_failure_forget_seconds", C_UINT, "300", "a user+IP's failed logins, and an IP's count, are forgotten after this long" },
	{ "auth_max_failures", C_UINT, "10", "failed logins of one user from one IP before that pair is refused until forgotten (0: never)" },
	{ "auth_ip_max_failures", C_UINT, "100", "failed logins from one IP, any users, after which its every answer waits the longest delay (0: off)" },
	{ "max_userip_connections", C_UINT, "10", "logged-in sessions per protocol, user and IP, as Dovecot's mail_max_userip_connections (0: unlimited)" },
	{ "auth_allow_plain", C_BOOL, "no", "accept {PLAIN} passwords in DATA/passwd" },
	{ "imap_autologout", C_UINT, "1800", "seconds of silence before an IMAP session is closed" },
	{ "imap_message_limit", C_UINT, "0", "MESSAGELIMIT (RFC 9738): most messages one FETCH, STORE, COPY, MOVE or UID EXPUNGE handles (0: none, not advertised)" },
	{ "imap_idle_timeout", C_UINT, "7200", "seconds an IDLE may last without traffic" },
	{ "max_connections_per_worker", C_UINT, "20000", "connections one worker accepts" },
	{ "restart_min_uptime", C_UINT, "10",
	  "seconds a worker or the auth process must run for its death to be restarted at once; "
	  "one that dies sooner is restarted after a back-off of 1 s doubling to 60 s (0: always at once)" },
	/* Dovecot: CLIENT_OUTPUT_TIMEOUT_MSECS = 5 minutes (imap-common.h). */
	{ "client_write_timeout", C_UINT, "300",
	  "seconds output may wait unread before the client is disconnected (0: never)" },
	{ "client_max_output", C_SIZE, "4M",
	  "output queued for a client that does not read, before BYE and close (0: no limit)" },
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

struct config {
	char *values[N_KEYS];
};

static int key_index(const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int check_listen(const char *v)
{
	/* "", or ADDR:PORT / unix:PATH items separated by commas */
	const char *p = v;
	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		while (len > 0 && *p == ' ') {
			p++;
			len--;
		}
		if (len > 5 && strncmp(p, "unix:", 5) == 0) {
			if (len - 5 > 100)
				return -1;
		} else {
			const char *colon = memrchr(p, ':', len);
			uint64_t port;
			if (colon == NULL || colon == p)
				return -1;
			size_t plen = len - (size_t)(colon + 1 - p);
			while (plen > 0 && colon[plen] == ' ')
				plen--;
			if (strnum_u64(colon + 1, plen, 65535, &port) < 0 || port == 0)
				return -1;
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	return 0;
}

static int check_value(const struct key *k, const char *v, struct error *err)
{
	uint64_t n;
	switch (k->type) {
	case C_STR:
		if (strcmp(k->name, "log") == 0 && strcmp(v, "stderr") != 0 && strcmp(v, "syslog") != 0) {
			error_set(err, ERR_INVALID, "must be stderr or syslog");
			return -1;
		}
		return 0;
	case C_UINT:
		if (strnum_u64z(v, UINT32_MAX, &n) < 0) {
			error_set(err, ERR_INVALID, "not a number");
			return -1;
		}
		return 0;
	case C_SIZE:
		if (strnum_size(v, &n) < 0) {
			error_set(err, ERR_INVALID,
				  "not a size (digits with an optional K, M, G or T)");
			return -1;
		}
		return 0;
	case C_BOOL:
		if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0) {
			error_set(err, ERR_INVALID, "must be yes or no");
			return -1;
		}
		return 0;
	case C_LISTEN:
		if (check_listen(v) < 0) {
			error_set(err, ERR_INVALID,
				  "must be a comma-separated list of ADDR:PORT or unix:PATH");
			return -1;
		}
		return 0;
	}
	return 0;
}

struct config *config_new_defaults(void)
{
	struct config *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	for (size_t i = 0; i < N_KEYS; i++) {
		c->values[i] = strdup(keys[i].def);
		if (c->values[i] == NULL) {
			config_free(&c);
			return NULL;
		}
	}
	return c;
}

void config_free(struct config **config)
{
	if (*config == NULL)
		return;
	for (size_t i = 0; i < N_KEYS; i++)
		free((*config)->values[i]);
	free(*config);
	*config = NULL;
}

int config_set(struct config *config, const char *key, const char *value, struct error *err)
{
	int i = key_index(key);
	if (i < 0) {
		error_set(err, ERR_INVALID, "unknown setting");
		return -1;
	}
	if (check_value(&keys[i], value, err) < 0)
		return -1;
	char *v = strdup(value);
	if (v == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	free(config->values[i]);
	config->values[i] = v;
	return 0;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

static int load_file(struct config *c, const char *path, struct error *err)
{
	FILE *f = fopen(path, "re");
	char line[4096];
	unsigned lineno = 0;
	struct error why;

	if (f == NULL) {
		if (errno == ENOENT)
			return 0;
		error_errno(err, path);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			error_set(err, ERR_INVALID, "%s:%u: line too long", path, lineno);
			goto fail;
		}
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			error_set(err, ERR_INVALID, "%s:%u: expected 'key = value'", path, lineno);
			goto fail;
		}
		*eq = '\0';
		char *key = trim(s);
		char *value = trim(eq + 1);
		if (config_set(c, key, value, &why) < 0) {
			error_set(err, why.code, "%s:%u: %s: %s", path, lineno, key, why.text);
			goto fail;
		}
	}
	fclose(f);
	return 0;
fail:
	fclose(f);
	return -1;
}

int config_load(const char *data_dir, char *const *overrides, int n_overrides,
		struct config **config_r, struct error *err)
{
	struct buf path = BUF_INIT;
	struct error why;
	struct config *c = config_new_defaults();

	if (c == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	buf_printf(&path, "%s/mailroom.conf", data_dir);
	if (load_file(c, buf_cstr(&path), err) < 0)
		goto fail;
	for (int i = 0; i < n_overrides; i++) {
		char key[128];
		const char *eq = strchr(overrides[i], '=');
		size_t klen = eq ? (size_t)(eq - overrides[i]) : 0;
		if (eq == NULL || klen == 0 || klen >= sizeof(key)) {
			error_set(err, ERR_INVALID, "-o %s: expected key=value", overrides[i]);
			goto fail;
		}
		memcpy(key, overrides[i], klen);
		key[klen] = '\0';
		if (config_set(c, key, eq + 1, &why) < 0) {
			error_set(err, why.code, "-o %s: %s", overrides[i], why.text);
			goto fail;
		}
	}
	buf_free(&path);
	*config_r = c;
	return 0;
fail:
	buf_free(&path);
	config_free(&c);
	return -1;
}

static int must_key(const char *key)
{
	int i = key_index(key);
	if (i < 0)
		abort();
	return i;
}

const char *config_str(const struct config *config, const char *key)
{
	return config->values[must_key(key)];
}

uint64_t config_uint(const struct config *config, const char *key)
{
	int i = must_key(key);
	uint64_t v = 0;
	if (keys[i].type == C_SIZE)
		(void)strnum_size(config->values[i], &v);
	else
		(void)strnum_u64z(config->values[i], UINT64_MAX, &v);
	return v;
}

int config_bool(const struct config *config, const char *key)
{
	return strcmp(config->values[must_key(key)], "yes") == 0;
}

void config_print(const struct config *config, FILE *out, int all)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (all || strcmp(config->values[i], keys[i].def) != 0)
			fprintf(out, "%s = %s\n", keys[i].name, config->values[i]);
}
