/*
 * cmd_serve.c: `mailroom serve -d DATA [-o key=value]...` (runs in the
 * foreground, logs to stderr, exits non-zero with one message when it cannot
 * start: EX_CONFIG for a bad setting, EX_NOPERM when run_user cannot open
 * DATA; see server_main) and `mailroom config -d DATA [-a] [-o key=value]...` (prints the
 * effective settings that differ from the defaults, or all with -a).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sysexits.h>

#include "cli/cli.h"
#include "lib/config.h"
#include "server/server.h"

#define MAX_OVERRIDES 128

static int parse(int argc, char **argv, const char *usage, const char **data, char **ov,
		 int *nov, int *all)
{
	int c;
	*data = cli_default_data_dir();
	*nov = 0;
	while ((c = getopt(argc, argv, "d:o:ah")) != -1) {
		switch (c) {
		case 'd': *data = optarg; break;
		case 'o':
			if (*nov == MAX_OVERRIDES) {
				fprintf(stderr, "too many -o options\n");
				return EX_USAGE;
			}
			ov[(*nov)++] = optarg;
			break;
		case 'a':
			if (all != NULL) {
				*all = 1;
				break;
			}
			/* fall through */
		default:
			fputs(usage, stderr);
			return EX_USAGE;
		}
	}
	if (optind != argc || *data == NULL) {
		fputs(usage, stderr);
		return EX_USAGE;
	}
	return 0;
}

int cmd_serve(int argc, char **argv)
{
	const char *data;
	char *ov[MAX_OVERRIDES];
	int nov;
	int rc = parse(argc, argv, "usage: mailroom serve -d DATA [-o key=value]...\n", &data, ov,
		       &nov, NULL);
	if (rc != 0)
		return rc;
	return server_main(data, ov, nov);
}

int cmd_config(int argc, char **argv)
{
	const char *data;
	char *ov[MAX_OVERRIDES];
	int nov, all = 0;
	struct config *cfg = NULL;
	struct error err;
	int rc = parse(argc, argv, "usage: mailroom config -d DATA [-a] [-o key=value]...\n", &data,
		       ov, &nov, &all);
	if (rc != 0)
		return rc;
	if (config_load(data, ov, nov, &cfg, &err) < 0) {
		fprintf(stderr, "mailroom config: %s\n", err.text);
		return EX_CONFIG;
	}
	config_print(cfg, stdout, all);
	config_free(&cfg);
	return 0;
}
