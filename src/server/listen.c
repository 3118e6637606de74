/* listen.c: bind the configured listeners; see server.h. */
#include "server/server.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/config.h"

static const struct {
	const char *key;
	enum listen_proto proto;
	const char *name;
} keys[] = {
	{ "imap_listen", PROTO_IMAP, "IMAP" },	  { "imaps_listen", PROTO_IMAPS, "IMAPS" },
	{ "pop3_listen", PROTO_POP3, "POP3" },	  { "pop3s_listen", PROTO_POP3S, "POP3S" },
	{ "lmtp_listen", PROTO_LMTP, "LMTP" },
};

const char *listen_proto_name(enum listen_proto p)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (keys[i].proto == p)
			return keys[i].name;
	return "?";
}

static int bind_unix(const char *path, const char *data_dir, struct error *err)
{
	struct sockaddr_un sun;
	char full[sizeof(sun.sun_path)];
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (path[0] == '/')
		snprintf(full, sizeof(full), "%s", path);
	else if ((size_t)snprintf(full, sizeof(full), "%s/%s", data_dir, path) >= sizeof(full)) {
		error_set(err, ERR_INVALID, "unix:%s: path too long", path);
		return -1;
	}
	memcpy(sun.sun_path, full, strlen(full) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		error_set(err, ERR_TEMP, "unix:%s: %s", path, strerror(errno));
		return -1;
	}
	/* A stale socket from an earlier run: remove it if nobody answers. */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		close(fd);
		error_set(err, ERR_EXISTS, "unix:%s: another server is listening there", path);
		return -1;
	}
	unlink(full);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(full, 0666) < 0 ||
	    listen(fd, 511) < 0) {
		error_set(err, ERR_TEMP, "unix:%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int bind_inet(const char *spec, struct error *err)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	size_t hlen = colon ? (size_t)(colon - spec) : 0;
	if (colon == NULL || hlen >= sizeof(host)) {
		error_set(err, ERR_INVALID, "%s: expected ADDR:PORT", spec);
		return -1;
	}
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		memmove(host, host + 1, hlen - 2);
		host[hlen - 2] = '\0';
	}
	struct addrinfo hints, *res;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int gai = getaddrinfo(host[0] && strcmp(host, "*") != 0 ? host : NULL, colon + 1, &hints, &res);
	if (gai != 0) {
		error_set(err, gai == EAI_AGAIN || gai == EAI_MEMORY ? ERR_TEMP : ERR_INVALID,
			  "%s: %s", spec, gai_strerror(gai));
		return -1;
	}
	int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
		error_set(err, ERR_TEMP, "%s: %s", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	return fd;
}

int listen_open_all(const struct config *cfg, const char *data_dir, struct listeners *ls,
		    struct error *err)
{
	memset(ls, 0, sizeof(*ls));
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		char *list = strdup(config_str(cfg, keys[k].key));
		char *save = NULL;
		if (list == NULL)
			goto oom;
		for (char *item = strtok_r(list, ",", &save); item != NULL;
		     item = strtok_r(NULL, ",", &save)) {
			while (*item == ' ')
				item++;
			size_t len = strlen(item);
			while (len > 0 && item[len - 1] == ' ')
				item[--len] = '\0';
			if (len == 0)
				continue;
			struct error why;
			int fd = strncmp(item, "unix:", 5) == 0
					 ? bind_unix(item + 5, data_dir, &why)
					 : bind_inet(item, &why);
			if (fd < 0) {
				error_set(err, why.code, "cannot listen (%s): %s", keys[k].key,
					  why.text);
				free(list);
				listen_close_all(ls);
				return -1;
			}
			struct listener *p = realloc(ls->v, (ls->n + 1) * sizeof(*p));
			if (p == NULL) {
				close(fd);
				free(list);
				goto oom;
			}
			ls->v = p;
			ls->v[ls->n].proto = keys[k].proto;
			ls->v[ls->n].fd = fd;
			snprintf(ls->v[ls->n].name, sizeof(ls->v[ls->n].name), "%s %s",
				 keys[k].name, item);
			ls->n++;
		}
		free(list);
	}
	return 0;
oom:
	error_set(err, ERR_TEMP, "out of memory");
	listen_close_all(ls);
	return -1;
}

void listen_close_all(struct listeners *ls)
{
	for (size_t i = 0; i < ls->n; i++)
		close(ls->v[i].fd);
	free(ls->v);
	memset(ls, 0, sizeof(*ls));
}
