/*
 * imap_thread.c: the threading algorithms of RFC 5256 3: ORDEREDSUBJECT
 * and REFERENCES (steps 1-7 of the REFERENCES description, numbered as in
 * the RFC below).
 *
 * Design note. Containers live in one array (messages first, then the
 * Message-IDs only referenced), linked by indices; Message-IDs and base
 * subjects are found through open-addressing hash tables of indices. No
 * step recurses: the tree is walked with explicit stacks or in the reverse
 * of a pre-order listing (children before parents), so a hostile chain of
 * 20,000 replies costs no stack. Memory: about 40 bytes a container plus
 * the tables, freed before returning.
 */
#include "imap/imap_thread.h"

#include <stdlib.h>
#include <string.h>

struct cont {
	int msg;    /* index into msgs, -1 for a dummy */
	int parent; /* -1: none */
	int child, next;
	const char *id; /* Message-ID without <>, NULL when unique */
	size_t idlen;
	int64_t kdate; /* sort key: own date or first child's */
	uint32_t kseq;
	bool removed;
};

struct th {
	const struct imap_thread_msg *msgs;
	struct cont *c;
	size_t n, cap;
	int *table; /* id -> container, -1 empty */
	size_t tcap;
	bool oom;
};

static uint64_t hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

static int new_cont(struct th *t, int msg)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct cont *c = realloc(t->c, cap * sizeof(*c));
		if (c == NULL) {
			t->oom = true;
			return -1;
		}
		t->c = c;
		t->cap = cap;
	}
	t->c[t->n] = (struct cont){ .msg = msg, .parent = -1, .child = -1, .next = -1 };
	return (int)t->n++;
}

/* The container of id (created when missing); -1 on ENOMEM. */
static int lookup(struct th *t, const char *id, size_t len, bool *created)
{
	size_t mask = t->tcap - 1;
	size_t i = (size_t)hash(id, len) & mask;
	*created = false;
	while (t->table[i] >= 0) {
		struct cont *c = &t->c[t->table[i]];
		if (c->idlen == len && memcmp(c->id, id, len) == 0)
			return t->table[i];
		i = (i + 1) & mask;
	}
	int k = new_cont(t, -1);
	if (k < 0)
		return -1;
	t->c[k].id = id;
	t->c[k].idlen = len;
	t->table[i] = k;
	*created = true;
	return k;
}

/* The next "<...>" in *p: its inside, or NULL. */
static const char *next_id(const char **p, size_t *len)
{
	if (*p == NULL)
		return NULL;
	for (;;) {
		const char *lt = strchr(*p, '<');
		if (lt == NULL)
			return NULL;
		const char *gt = strchr(lt + 1, '>');
		if (gt == NULL)
			return NULL;
		const char *lt2 = memchr(lt + 1, '<', (size_t)(gt - lt - 1));
		if (lt2 != NULL) {
			*p = lt2;
			continue;
		}
		*p = gt + 1;
		if (gt - lt - 1 > 0) {
			*len = (size_t)(gt - lt - 1);
			return lt + 1;
		}
	}
}

static bool is_ancestor(const struct th *t, int a, int b)
{
	for (int x = b; x >= 0; x = t->c[x].parent)
		if (x == a)
			return true;
	return false;
}

static void unlink_cont(struct th *t, int k)
{
	int p = t->c[k].parent;
	if (p < 0)
		return;
	int *pp = &t->c[p].child;
	while (*pp != k)
		pp = &t->c[*pp].next;
	*pp = t->c[k].next;
	t->c[k].next = -1;
	t->c[k].parent = -1;
}

static void link_cont(struct th *t, int parent, int k)
{
	unlink_cont(t, k);
	t->c[k].parent = parent;
	t->c[k].next = t->c[parent].child;
	t->c[parent].child = k;
}

/* Step 1: the containers and their links. */
static int build(struct th *t, size_t n)
{
	size_t nids = 0;
	for (size_t i = 0; i < n; i++) {
		const char *p = t->msgs[i].refs;
		size_t l;
		nids++;
		while (next_id(&p, &l) != NULL)
			nids++;
		nids++; /* in-reply-to */
	}
	t->tcap = 64;
	while (t->tcap < nids * 2)
		t->tcap *= 2;
	t->table = malloc(t->tcap * sizeof(*t->table));
	if (t->table == NULL)
		return -1;
	memset(t->table, 0xff, t->tcap * sizeof(*t->table));
	for (size_t i = 0; i < n; i++) {
		const struct imap_thread_msg *m = &t->msgs[i];
		const char *p = m->msgid;
		size_t l = 0;
		const char *id = next_id(&p, &l);
		bool created;
		int mc = -1;
		/* A: a duplicate or missing Message-ID: a unique container */
		if (id != NULL) {
			mc = lookup(t, id, l, &created);
			if (mc >= 0 && t->c[mc].msg >= 0)
				mc = new_cont(t, (int)i);
			else if (mc >= 0)
				t->c[mc].msg = (int)i;
		} else {
			mc = new_cont(t, (int)i);
		}
		if (mc < 0)
			return -1;
		/* B: link the references in order */
		p = m->refs;
		int prev = -1, last = -1;
		while ((id = next_id(&p, &l)) != NULL) {
			int rc = lookup(t, id, l, &created);
			if (rc < 0)
				return -1;
			if (prev >= 0 && prev != rc && t->c[rc].parent < 0 && !is_ancestor(t, rc, prev))
				link_cont(t, prev, rc);
			prev = last = rc;
		}
		if (last < 0 && m->irt != NULL) {
			p = m->irt;
			if ((id = next_id(&p, &l)) != NULL && (last = lookup(t, id, l, &created)) < 0)
				return -1;
		}
		/* C: the parent is the last reference */
		if (last >= 0 && last != mc && !is_ancestor(t, mc, last))
			link_cont(t, last, mc);
		else if (last < 0)
			unlink_cont(t, mc);
	}
	return 0;
}

/* Every live container in pre-order from the roots (-1 on ENOMEM). */
static int preorder(struct th *t, int **order_r, size_t *n_r)
{
	int *order = malloc((t->n ? t->n : 1) * sizeof(*order));
	int *stack = malloc((t->n ? t->n : 1) * sizeof(*stack));
	size_t no = 0, ns = 0;
	if (order == NULL || stack == NULL) {
		free(order);
		free(stack);
		return -1;
	}
	for (size_t r = 0; r < t->n; r++) {
		if (t->c[r].parent >= 0 || t->c[r].removed)
			continue;
		stack[ns++] = (int)r;
		while (ns > 0) {
			int k = stack[--ns];
			order[no++] = k;
			for (int ch = t->c[k].child; ch >= 0; ch = t->c[ch].next)
				stack[ns++] = ch;
		}
	}
	free(stack);
	*order_r = order;
	*n_r = no;
	return 0;
}

static int nchildren(const struct th *t, int k)
{
	int n = 0;
	for (int ch = t->c[k].child; ch >= 0; ch = t->c[ch].next)
		n++;
	return n;
}

/* Step 4: prune dummies, children first. */
static int prune(struct th *t)
{
	int *order;
	size_t no;
	if (preorder(t, &order, &no) < 0)
		return -1;
	for (size_t i = no; i-- > 0;) {
		int k = order[i];
		struct cont *c = &t->c[k];
		if (c->msg >= 0)
			continue;
		int kids = nchildren(t, k);
		if (kids == 0) {
			unlink_cont(t, k);
			c->removed = true;
		} else if (c->parent >= 0 || kids == 1) {
			int p = c->parent;
			while (c->child >= 0) {
				int ch = c->child;
				if (p >= 0) {
					link_cont(t, p, ch);
				} else {
					unlink_cont(t, ch);
				}
			}
			unlink_cont(t, k);
			c->removed = true;
		}
	}
	free(order);
	return 0;
}

static const struct th *cmp_t;

static int cmp_key(const void *pa, const void *pb)
{
	const struct cont *a = &cmp_t->c[*(const int *)pa], *b = &cmp_t->c[*(const int *)pb];
	if (a->kdate != b->kdate)
		return a->kdate < b->kdate ? -1 : 1;
	return a->kseq < b->kseq ? -1 : a->kseq > b->kseq;
}

/* Steps 5 and 7: sort every sibling list by sent date (a dummy by its
 * first child's), children first. */
static int sort_all(struct th *t)
{
	int *order, *kids = malloc((t->n ? t->n : 1) * sizeof(int));
	size_t no;
	if (kids == NULL || preorder(t, &order, &no) < 0) {
		free(kids);
		return -1;
	}
	cmp_t = t;
	for (size_t i = no; i-- > 0;) {
		struct cont *c = &t->c[order[i]];
		size_t nk = 0;
		for (int ch = c->child; ch >= 0; ch = t->c[ch].next)
			kids[nk++] = ch;
		if (nk > 1) {
			qsort(kids, nk, sizeof(int), cmp_key);
			c->child = kids[0];
			for (size_t j = 0; j < nk; j++)
				t->c[kids[j]].next = j + 1 < nk ? kids[j + 1] : -1;
		}
		if (c->msg >= 0) {
			c->kdate = t->msgs[c->msg].date;
			c->kseq = t->msgs[c->msg].seq;
		} else if (c->child >= 0) {
			c->kdate = t->c[c->child].kdate;
			c->kseq = t->c[c->child].kseq;
		}
	}
	cmp_t = NULL;
	free(order);
	free(kids);
	return 0;
}

/* The roots, sorted (the caller frees). */
static int roots(struct th *t, int **r_r, size_t *n_r)
{
	int *r = malloc((t->n ? t->n : 1) * sizeof(*r));
	size_t n = 0;
	if (r == NULL)
		return -1;
	for (size_t k = 0; k < t->n; k++)
		if (t->c[k].parent < 0 && !t->c[k].removed)
			r[n++] = (int)k;
	cmp_t = t;
	qsort(r, n, sizeof(*r), cmp_key);
	cmp_t = NULL;
	*r_r = r;
	*n_r = n;
	return 0;
}

/* The message that stands for a root: itself, or a dummy's first child. */
static const struct imap_thread_msg *root_msg(const struct th *t, int k)
{
	const struct cont *c = &t->c[k];
	if (c->msg < 0)
		c = &t->c[c->child];
	return c->msg >= 0 ? &t->msgs[c->msg] : NULL;
}

/* Step 6: gather roots by base subject. The table keeps each entry's
 * subject: merging changes a dummy's first child, and with it the subject
 * root_msg would give. */
struct subj {
	const char *base;
	int cont; /* -1: empty slot */
};

static struct subj *subj_find(struct subj *tab, size_t mask, const char *base)
{
	size_t h = (size_t)hash(base, strlen(base)) & mask;
	while (tab[h].cont >= 0 && strcmp(tab[h].base, base) != 0)
		h = (h + 1) & mask;
	return &tab[h];
}

static int group(struct th *t, int *r, size_t nr)
{
	size_t cap = 64;
	while (cap < nr * 2)
		cap *= 2;
	struct subj *tab = malloc(cap * sizeof(*tab));
	if (tab == NULL)
		return -1;
	for (size_t i = 0; i < cap; i++)
		tab[i] = (struct subj){ NULL, -1 };
	for (size_t i = 0; i < nr; i++) { /* B */
		const struct imap_thread_msg *m = root_msg(t, r[i]);
		if (m == NULL || m->base[0] == '\0')
			continue;
		struct subj *e = subj_find(tab, cap - 1, m->base);
		if (e->cont < 0) {
			*e = (struct subj){ m->base, r[i] };
			continue;
		}
		const struct imap_thread_msg *o = root_msg(t, e->cont);
		if ((t->c[r[i]].msg < 0 && t->c[e->cont].msg >= 0) ||
		    (o->is_reply && !m->is_reply && t->c[e->cont].msg >= 0))
			e->cont = r[i];
	}
	for (size_t i = 0; i < nr; i++) { /* C */
		int k = r[i];
		if (t->c[k].removed || t->c[k].parent >= 0)
			continue;
		const struct imap_thread_msg *m = root_msg(t, k);
		if (m == NULL || m->base[0] == '\0')
			continue;
		struct subj *e = subj_find(tab, cap - 1, m->base);
		int o = e->cont;
		if (o < 0 || o == k)
			continue;
		bool kd = t->c[k].msg < 0, od = t->c[o].msg < 0;
		if (kd && od) {
			while (t->c[k].child >= 0)
				link_cont(t, o, t->c[k].child);
			t->c[k].removed = true;
		} else if (od) {
			link_cont(t, o, k);
		} else if (kd) {
			link_cont(t, k, o);
			e->cont = k;
		} else if (!root_msg(t, o)->is_reply && m->is_reply) {
			link_cont(t, o, k);
		} else {
			int d = new_cont(t, -1);
			if (d < 0) {
				free(tab);
				return -1;
			}
			link_cont(t, d, o);
			link_cont(t, d, k);
			e->cont = d;
		}
	}
	free(tab);
	return 0;
}

/* One thread: "(" members ")", without recursion. */
static void emit(const struct th *t, int root, int *stack, struct buf *out)
{
	size_t ns = 0;
	int cur = root;
	bool first = true;
	buf_putc(out, '(');
	stack[ns++] = -1;
	for (;;) {
		for (;;) {
			const struct cont *c = &t->c[cur];
			if (c->msg >= 0) {
				buf_printf(out, first ? "%u" : " %u", t->msgs[c->msg].num);
				first = false;
			}
			if (c->child < 0)
				break;
			if (t->c[c->child].next < 0) {
				cur = c->child;
				continue;
			}
			if (!first)
				buf_putc(out, ' ');
			buf_putc(out, '(');
			stack[ns++] = t->c[c->child].next;
			cur = c->child;
			first = true;
		}
		for (;;) {
			int next = stack[--ns];
			buf_putc(out, ')');
			if (next >= 0) {
				buf_putc(out, '(');
				stack[ns++] = t->c[next].next;
				cur = next;
				first = true;
				break;
			}
			if (ns == 0)
				return;
		}
	}
}

int imap_thread_references(const struct imap_thread_msg *msgs, size_t n, struct buf *out)
{
	struct th t = { .msgs = msgs };
	int *r = NULL, *stack = NULL;
	size_t nr;
	int ret = -1;
	if (build(&t, n) < 0 || t.oom)
		goto out;
	free(t.table); /* step 3 */
	t.table = NULL;
	if (prune(&t) < 0 || sort_all(&t) < 0 || roots(&t, &r, &nr) < 0)
		goto out;
	if (group(&t, r, nr) < 0 || t.oom)
		goto out;
	free(r);
	r = NULL;
	if (sort_all(&t) < 0 || roots(&t, &r, &nr) < 0)
		goto out;
	stack = malloc((t.n + 2) * sizeof(*stack));
	if (stack == NULL)
		goto out;
	for (size_t i = 0; i < nr; i++)
		emit(&t, r[i], stack, out);
	ret = 0;
out:
	free(stack);
	free(r);
	free(t.table);
	free(t.c);
	return ret;
}

static const struct imap_thread_msg *os_msgs;

static int cmp_os(const void *pa, const void *pb)
{
	const struct imap_thread_msg *a = &os_msgs[*(const int *)pa], *b = &os_msgs[*(const int *)pb];
	int c = strcmp(a->base, b->base);
	if (c != 0)
		return c;
	if (a->date != b->date)
		return a->date < b->date ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int cmp_first(const void *pa, const void *pb)
{
	const struct imap_thread_msg *a = &os_msgs[((const int *)pa)[0]];
	const struct imap_thread_msg *b = &os_msgs[((const int *)pb)[0]];
	if (a->date != b->date)
		return a->date < b->date ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* RFC 5256 3 ORDEREDSUBJECT: by base subject, then sent date; each group's
 * first message is the parent of the others; threads in the order of
 * their first messages' sent dates. */
int imap_thread_orderedsubject(const struct imap_thread_msg *msgs, size_t n, struct buf *out)
{
	int *idx = malloc((n ? n : 1) * sizeof(int));
	int(*grp)[2] = malloc((n ? n : 1) * sizeof(*grp)); /* first index, count */
	size_t ng = 0;
	if (idx == NULL || grp == NULL) {
		free(idx);
		free(grp);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		idx[i] = (int)i;
	os_msgs = msgs;
	qsort(idx, n, sizeof(int), cmp_os);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && strcmp(msgs[idx[j]].base, msgs[idx[i]].base) == 0)
			j++;
		grp[ng][0] = (int)i;
		grp[ng][1] = (int)(j - i);
		ng++;
		i = j;
	}
	/* sort groups by their first message: compare via idx */
	for (size_t g = 0; g < ng; g++)
		grp[g][0] = (int)((size_t)grp[g][0]); /* position in idx */
	int(*keyed)[2] = malloc((ng ? ng : 1) * sizeof(*keyed));
	if (keyed == NULL) {
		free(idx);
		free(grp);
		return -1;
	}
	for (size_t g = 0; g < ng; g++) {
		keyed[g][0] = idx[grp[g][0]];
		keyed[g][1] = (int)g;
	}
	qsort(keyed, ng, sizeof(*keyed), cmp_first);
	for (size_t k = 0; k < ng; k++) {
		size_t g = (size_t)keyed[k][1];
		int start = grp[g][0], cnt = grp[g][1];
		buf_printf(out, "(%u", msgs[idx[start]].num);
		if (cnt == 2) {
			buf_printf(out, " %u", msgs[idx[start + 1]].num);
		} else if (cnt > 2) {
			buf_putc(out, ' ');
			for (int j = 1; j < cnt; j++)
				buf_printf(out, "(%u)", msgs[idx[start + j]].num);
		}
		buf_putc(out, ')');
	}
	os_msgs = NULL;
	free(keyed);
	free(idx);
	free(grp);
	return 0;
}
