/*
 * store_flags.c: the arithmetic of a flag change (STORE FLAGS, +FLAGS,
 * -FLAGS), written once: store_mailbox_set_flags applies it to each message,
 * and a caller that must know what a client works out for itself applies
 * it to what the client was told.
 */
#include "store/store_int.h"

void store_flags_apply(enum store_flag_mode mode, uint32_t flags, uint32_t keywords,
		       uint32_t *flags_io, uint32_t *keywords_io)
{
	switch (mode) {
	case STORE_FLAGS_SET:
		*flags_io = flags;
		*keywords_io = keywords;
		break;
	case STORE_FLAGS_ADD:
		*flags_io |= flags;
		*keywords_io |= keywords;
		break;
	case STORE_FLAGS_REMOVE:
		*flags_io &= ~flags;
		*keywords_io &= ~keywords;
		break;
	}
}
