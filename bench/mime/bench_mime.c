/*
 * bench_mime.c: throughput and memory of the src/mime parser.
 *
 *   bench_mime corpus FILE...   parse every file (held in memory) repeatedly
 *                               for about 2 s; print MB/s of the parse alone
 *                               and of parse + ENVELOPE + BODYSTRUCTURE
 *   bench_mime big MB           stream a generated MB-megabyte message
 *                               (multipart, base64 attachment lines) through
 *                               the parser in 64 KiB slices without ever
 *                               holding it; print MB/s and peak RSS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mime/mime.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long peak_rss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static int corpus(int argc, char **argv)
{
	int n = argc;
	char **data = calloc((size_t)n, sizeof(*data));
	size_t *len = calloc((size_t)n, sizeof(*len));
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (f == NULL) {
			perror(argv[i]);
			return 1;
		}
		fseek(f, 0, SEEK_END);
		len[i] = (size_t)ftell(f);
		fseek(f, 0, SEEK_SET);
		data[i] = malloc(len[i] + 1);
		if (fread(data[i], 1, len[i], f) != len[i])
			return 1;
		fclose(f);
		total += len[i];
	}
	for (int with_imap = 0; with_imap < 2; with_imap++) {
		double start = now(), elapsed;
		size_t bytes = 0;
		unsigned int rounds = 0;
		do {
			for (int i = 0; i < n; i++) {
				struct mime_tree *t;
				struct error error;
				if (mime_parse_buffer(data[i], len[i], &t, &error) < 0)
					return 1;
				if (with_imap) {
					size_t l;
					free(mime_envelope_imap(t->root, &l));
					free(mime_bodystructure_imap(t, true, &l));
					free(mime_tree_serialize(t, &l));
				}
				mime_tree_free(&t);
			}
			bytes += total;
			rounds++;
			elapsed = now() - start;
		} while (elapsed < 2.0);
		printf("corpus: %d messages, %.1f MB, %u rounds: %.0f MB/s %s (%.0f messages/s)\n", n,
		       (double)total / 1e6, rounds, (double)bytes / 1e6 / elapsed,
		       with_imap ? "parse+ENVELOPE+BODYSTRUCTURE+index form" : "parse only",
		       (double)n * rounds / elapsed);
	}
	return 0;
}

static int big(long mb)
{
	const size_t target = (size_t)mb * 1000 * 1000;
	static char chunk[65536];
	struct mime_parser *p = mime_parser_new(NULL);
	const char *head = "From: bench <b@example.com>\r\nSubject: big\r\n"
			   "Content-Type: multipart/mixed; boundary=\"=_bench\"\r\n\r\n"
			   "--=_bench\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
			   "--=_bench\r\nContent-Type: application/octet-stream\r\n"
			   "Content-Transfer-Encoding: base64\r\n\r\n";
	const char *tail = "\r\n--=_bench--\r\n";
	/* a chunk of 76-character base64 lines */
	size_t fill = 0;
	while (fill + 78 <= sizeof(chunk)) {
		for (int i = 0; i < 76; i++)
			chunk[fill + (size_t)i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(fill + (size_t)i * 7) % 64];
		chunk[fill + 76] = '\r';
		chunk[fill + 77] = '\n';
		fill += 78;
	}
	double start = now();
	size_t done = 0;
	mime_parser_feed(p, head, strlen(head));
	done += strlen(head);
	while (done + fill + strlen(tail) <= target) {
		mime_parser_feed(p, chunk, fill);
		done += fill;
	}
	mime_parser_feed(p, tail, strlen(tail));
	done += strlen(tail);
	struct mime_tree *t;
	struct error error;
	if (mime_parser_finish(&p, &t, &error) < 0)
		return 1;
	size_t l;
	char *bs = mime_bodystructure_imap(t, true, &l);
	double elapsed = now() - start;
	printf("big message: %.1f MB streamed in 64 KiB slices: %.0f MB/s, peak RSS %ld KiB, %u parts\n",
	       (double)done / 1e6, (double)done / 1e6 / elapsed, peak_rss_kb(), t->part_count);
	free(bs);
	mime_tree_free(&t);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "corpus") == 0)
		return corpus(argc - 2, argv + 2);
	if (argc == 3 && strcmp(argv[1], "big") == 0)
		return big(atol(argv[2]));
	fprintf(stderr, "usage: bench_mime corpus FILE... | bench_mime big MB\n");
	return 64;
}
