/*
 * cmd_mime.c: `mailroom mime ...`, the message parser from the command line
 * (for tests, benchmarks and looking at a message file by hand).
 *
 *   mailroom mime envelope FILE          ENVELOPE
 *   mailroom mime bodystructure FILE     BODYSTRUCTURE (with extension data)
 *   mailroom mime body-basic FILE        BODY (no extension data)
 *   mailroom mime body FILE SECTION      BODY[SECTION], SECTION as between the
 *                                        brackets, optionally followed by <o.c>
 *   mailroom mime binary FILE SECTION    BINARY[SECTION] (decoded)
 *   mailroom mime binary-size FILE SECTION
 *   mailroom mime dump FILE              the part tree with offsets and flags
 *   mailroom mime tree FILE              the serialised tree (index form)
 *   mailroom mime batch                  read "CMD<TAB>FILE[<TAB>SECTION]" lines
 *                                        on stdin; per line answer
 *                                        "OK <len>\n<bytes>\n" or "NO <why>\n"
 *
 * Output is exactly the IMAP bytes, without a trailing newline. Exit status:
 * 0, EX_USAGE, EX_DATAERR (no such part, bad section, unknown encoding),
 * EX_NOINPUT (cannot read FILE), EX_SOFTWARE (out of memory).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mime/mime.h"

struct outbuf {
	char *data;
	size_t len, cap;
	bool failed;
};

static int out_append(void *ctx, const void *data, size_t len)
{
	struct outbuf *o = ctx;
	if (o->len + len > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		while (cap < o->len + len)
			cap *= 2;
		char *d = realloc(o->data, cap);
		if (d == NULL) {
			o->failed = true;
			return -1;
		}
		o->data = d;
		o->cap = cap;
	}
	memcpy(o->data + o->len, data, len);
	o->len += len;
	return 0;
}

/* Parses FILE in 64 KiB slices. Returns the fd (kept open for sections)
 * or -1 with *exit_r set. */
static int parse_file(const char *path, struct mime_tree **tree_r, int *exit_r, struct error *why)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		error_set(why, errno == ENOENT ? ERR_NOTFOUND : ERR_TEMP, "%s", strerror(errno));
		*exit_r = EX_NOINPUT;
		return -1;
	}
	struct mime_parser *p = mime_parser_new(NULL);
	if (p == NULL) {
		close(fd);
		error_set(why, ERR_TEMP, "out of memory");
		*exit_r = EX_SOFTWARE;
		return -1;
	}
	static char buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error_set(why, ERR_TEMP, "%s", strerror(errno));
			mime_parser_free(&p);
			close(fd);
			*exit_r = EX_NOINPUT;
			return -1;
		}
		if (n == 0)
			break;
		if (mime_parser_feed(p, buf, (size_t)n) == MIME_ERROR)
			break;
	}
	if (mime_parser_finish(&p, tree_r, why) < 0) {
		close(fd);
		*exit_r = EX_SOFTWARE;
		return -1;
	}
	return fd;
}

static int parse_path(const char *spec, unsigned int *path, unsigned int *len_r)
{
	struct mime_section s;
	struct error error;
	if (mime_section_parse(spec, strlen(spec), &s, &error) < 0 || s.kind != MIME_SECTION_ALL)
		return -1;
	memcpy(path, s.path, s.path_len * sizeof(*path));
	*len_r = s.path_len;
	mime_section_clear(&s);
	return 0;
}

static void dump_part(struct outbuf *o, const struct mime_part *p)
{
	char line[512];
	int n = snprintf(line, sizeof(line),
			 "%*s%s/%s hdr=%llu+%llu body=%llu+%llu vsize=%llu lines=%llu flags=%#x\n",
			 (int)p->depth * 2, "", p->type, p->subtype,
			 (unsigned long long)p->header_offset, (unsigned long long)p->header_size,
			 (unsigned long long)p->body_offset, (unsigned long long)p->body_size,
			 (unsigned long long)p->body_vsize, (unsigned long long)p->body_lines, p->flags);
	out_append(o, line, n > 0 && (size_t)n < sizeof(line) ? (size_t)n : 0);
	for (const struct mime_part *c = p->children; c != NULL; c = c->next)
		dump_part(o, c);
}

/* Runs one command on a parsed file; output into o. Returns an exit code;
 * why explains a failure. */
static int run_one(const char *cmd, const struct mime_tree *tree, int fd, const char *arg,
		   struct outbuf *o, struct error *why)
{
	struct mime_source src = { mime_source_fd_pread, (void *)(intptr_t)fd };
	size_t len;
	char *s = NULL;
	if (strcmp(cmd, "envelope") == 0) {
		s = mime_envelope_imap(tree->root, &len);
	} else if (strcmp(cmd, "bodystructure") == 0) {
		s = mime_bodystructure_imap(tree, true, &len);
	} else if (strcmp(cmd, "body-basic") == 0) {
		s = mime_bodystructure_imap(tree, false, &len);
	} else if (strcmp(cmd, "tree") == 0) {
		s = mime_tree_serialize(tree, &len);
	} else if (strcmp(cmd, "dump") == 0) {
		char head[128];
		int n = snprintf(head, sizeof(head), "size=%llu vsize=%llu parts=%u flags=%#x\n",
				 (unsigned long long)tree->size, (unsigned long long)tree->vsize,
				 tree->part_count, tree->flags);
		out_append(o, head, (size_t)n);
		dump_part(o, tree->root);
		return o->failed ? EX_SOFTWARE : 0;
	} else if (strcmp(cmd, "body") == 0 || strcmp(cmd, "section") == 0) {
		if (arg == NULL) {
			error_set(why, ERR_INVALID, "missing SECTION");
			return EX_USAGE;
		}
		/* optional <origin.count> */
		size_t alen = strlen(arg);
		uint64_t origin = 0, count = UINT64_MAX;
		const char *lt = strchr(arg, '<');
		if (lt != NULL) {
			unsigned long long a, b;
			char tail;
			if (sscanf(lt, "<%llu.%llu%c", &a, &b, &tail) != 3 || tail != '>') {
				error_set(why, ERR_INVALID, "invalid partial");
				return EX_DATAERR;
			}
			origin = a;
			count = b;
			alen = (size_t)(lt - arg);
		}
		struct mime_section sec;
		struct mime_section_result r;
		if (mime_section_parse(arg, alen, &sec, why) < 0)
			return EX_DATAERR;
		int ret = mime_section_resolve(tree, &sec, &src, &r, why);
		mime_section_clear(&sec);
		if (ret < 0)
			return EX_DATAERR;
		ret = mime_section_copy(&r, &src, origin, count, out_append, o, why);
		mime_section_result_free(&r);
		return ret < 0 ? EX_IOERR : 0;
	} else if (strcmp(cmd, "binary") == 0 || strcmp(cmd, "binary-size") == 0) {
		unsigned int path[MIME_MAX_DEPTH + 1], plen;
		if (arg == NULL || parse_path(arg, path, &plen) < 0) {
			error_set(why, ERR_INVALID, "invalid SECTION for BINARY");
			return EX_DATAERR;
		}
		bool size_only = strcmp(cmd, "binary-size") == 0;
		uint64_t size;
		bool unknown;
		if (mime_section_binary(tree, path, plen, &src, size_only ? NULL : out_append, o,
					&size, &unknown, why) < 0) {
			if (unknown)
				error_set(why, ERR_DATA, "UNKNOWN-CTE");
			return EX_DATAERR;
		}
		if (size_only) {
			char num[32];
			int n = snprintf(num, sizeof(num), "%llu", (unsigned long long)size);
			out_append(o, num, (size_t)n);
		}
		return o->failed ? EX_SOFTWARE : 0;
	} else {
		error_set(why, ERR_INVALID, "unknown subcommand");
		return EX_USAGE;
	}
	if (s == NULL) {
		error_set(why, ERR_TEMP, "out of memory");
		return EX_SOFTWARE;
	}
	out_append(o, s, len);
	free(s);
	return o->failed ? EX_SOFTWARE : 0;
}

static int run_batch(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	char *cur_file = NULL;
	struct mime_tree *tree = NULL;
	int fd = -1, fexit = 0;
	struct error fwhy = {ERR_TEMP, "failed"};
	while ((n = getline(&line, &cap, stdin)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		char *cmd = line, *file = strchr(line, '\t'), *arg = NULL;
		if (file == NULL) {
			printf("NO usage\n");
			continue;
		}
		*file++ = '\0';
		arg = strchr(file, '\t');
		if (arg != NULL)
			*arg++ = '\0';
		if (cur_file == NULL || strcmp(cur_file, file) != 0) {
			if (fd >= 0)
				close(fd);
			mime_tree_free(&tree);
			free(cur_file);
			cur_file = strdup(file);
			fd = parse_file(file, &tree, &fexit, &fwhy);
		}
		if (fd < 0) {
			printf("NO %s\n", fwhy.text);
			continue;
		}
		struct outbuf o = { 0 };
		struct error why = {ERR_TEMP, "failed"};
		int ret = run_one(cmd, tree, fd, arg, &o, &why);
		if (ret == 0) {
			printf("OK %zu\n", o.len);
			if (o.len > 0) /* an empty part leaves o.data NULL */
				fwrite(o.data, 1, o.len, stdout);
			putchar('\n');
		} else {
			printf("NO %s\n", why.text);
		}
		free(o.data);
		fflush(stdout);
	}
	if (fd >= 0)
		close(fd);
	mime_tree_free(&tree);
	free(cur_file);
	free(line);
	return 0;
}

int cmd_mime(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "batch") == 0)
		return run_batch();
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: mailroom mime envelope|bodystructure|body-basic|dump|tree FILE\n"
				"       mailroom mime body|binary|binary-size FILE SECTION\n"
				"       mailroom mime batch < COMMANDS\n");
		return EX_USAGE;
	}
	struct mime_tree *tree = NULL;
	int exit_code;
	struct error why = {ERR_TEMP, "failed"};
	int fd = parse_file(argv[2], &tree, &exit_code, &why);
	if (fd < 0) {
		fprintf(stderr, "mailroom mime: %s: %s\n", argv[2], why.text);
		return exit_code;
	}
	struct outbuf o = { 0 };
	exit_code = run_one(argv[1], tree, fd, argc == 4 ? argv[3] : NULL, &o, &why);
	if (exit_code == 0) {
		if (fwrite(o.data, 1, o.len, stdout) != o.len || fflush(stdout) != 0) {
			fprintf(stderr, "mailroom mime: write error\n");
			exit_code = EX_IOERR;
		}
	} else {
		fprintf(stderr, "mailroom mime: %s\n", why.text);
	}
	free(o.data);
	mime_tree_free(&tree);
	close(fd);
	return exit_code;
}
