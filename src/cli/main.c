/*
 * main.c: `mailroom SUBCOMMAND ...` dispatch. Thin on purpose: every
 * subcommand lives in its own cmd_*.c and every behaviour in src/.
 */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "cli/cli.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
} commands[] = {
	{ "serve", cmd_serve, "serve -d DATA [-o key=value]..." },
	{ "config", cmd_config, "config -d DATA [-a] [-o key=value]..." },
	{ "user", cmd_user, "user add|passwd|del|list -d DATA [USER]" },
	{ "deliver", cmd_deliver, "deliver -d DATA [-m MAILBOX] USER..." },
	{ "check", cmd_check, "check -d DATA [--repair] [USER...]" },
	{ "mailbox", cmd_mailbox, "mailbox list|create|delete|rename -d DATA USER ..." },
	{ "import", cmd_import, "import -d DATA [--dry-run] [--password-file F] USER|--all SOURCE" },
	{ "mime", cmd_mime, "mime dump|section FILE ... (message parser, for tests)" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: mailroom COMMAND [ARGS]\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  mailroom %s\n", commands[i].usage);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EX_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "mailroom: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EX_USAGE;
}
