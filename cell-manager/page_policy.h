/*
 * The page policy: Disco's NUMA policy across hosts, deciding from what
 * the homes of a VM's pages sampled (dsm_region_sample) which homes to
 * move and which pages to replicate (docs/design/page-policy.md). A pure
 * module: nodes are member indices of the VM's region (0 .. n-1), time
 * is passed in, nothing is sent or logged. Unit tests in
 * tests/unit/cell-manager/test_page_policy.c.
 *
 * Per page of a sample (one interval's requests at its home, by member):
 *   leave      written by two or more members (and not read-mostly):
 *              write-shared; noted (mgr_pp_shared) with the members
 *              involved, never moved or copied.
 *   migrate    one member not the home made every request, or at least
 *              migrate_pct of at least min_requests: the home moves
 *              there, and the page is then held for hold_ms. (A DSM page
 *              faults again only after another node took it: its only
 *              user shows one request per first use, never more.)
 *   replicate  read-mostly (writes at most read_mostly_pct of the
 *              requests, counting copies pushed as reads) and read by two
 *              or more members: every reader is marked a replica at the
 *              home (a push decision), which pushes it a copy now if it
 *              has none and, from then on, on every read miss pushes the
 *              page to the marked readers without a copy (the DSM's read
 *              broadcast): after a write invalidated them, the first
 *              reader faults and the others find the page there. The
 *              page stays tracked while it stays read-mostly (averaged);
 *              when it is written too often its marks are cleared (an
 *              unmark decision). A tracked page written by one member
 *              only has its home moved to that writer (held as above):
 *              the writer's invalidations then start at home.
 * A member that is not up is never a target; every VM has a budget of
 * ops_per_s moves and pushes (a token bucket, burst of one second).
 */
#ifndef MGR_PAGE_POLICY_H
#define MGR_PAGE_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#define MGR_PP_MEMBERS 64   /* DSM_MAX_NODES */
#define MGR_PP_HELD    4096 /* pages held after a move, per VM */
#define MGR_PP_REPL    4096 /* read-mostly pages tracked, per VM */
#define MGR_PP_SHARED  64   /* write-shared pages noted, per VM */

enum mgr_pp_mode {
	MGR_PP_OFF = 0,
	MGR_PP_MIGRATE = 1,
	MGR_PP_REPLICATE = 2,
	MGR_PP_ALL = 3,
};

struct mgr_pp_config {
	uint32_t min_requests;	  /* fewer in an interval: no decision */
	uint32_t migrate_pct;	  /* the dominant member's share */
	uint32_t read_mostly_pct; /* writes' share at most */
	uint32_t hold_ms;	  /* a moved page stays put this long */
	uint32_t ops_per_s;	  /* moves and pushes per VM */
};

/* The defaults: 8 requests, 80 %, 40 %, 10 s, 1000 per second. */
void mgr_pp_config_defaults(struct mgr_pp_config *c);

/* One page as its home sampled it (counts of one interval). */
struct mgr_pp_sample {
	uint32_t page;
	uint64_t copies; /* member-index mask of read-only copies */
	uint32_t reads[MGR_PP_MEMBERS], writes[MGR_PP_MEMBERS];
};

struct mgr_pp_decision {
	uint32_t page;
	uint16_t target; /* member index */
	bool push;	 /* mark target a replica (and copy it there) */
	bool unmark;	 /* clear the page's marks; neither: move the home */
};

struct mgr_pp_shared {
	uint32_t page;
	uint64_t writers, readers; /* member-index masks */
	uint64_t seen_ms;
	uint32_t intervals; /* how many samples found it write-shared */
};

struct mgr_pp_vm {
	enum mgr_pp_mode mode;
	uint16_t members;
	bool up[MGR_PP_MEMBERS]; /* the caller keeps it current */
	/* moved pages: page+1 (0 free) and until when they are held */
	uint32_t held_page[MGR_PP_HELD];
	uint64_t held_until[MGR_PP_HELD];
	/* read-mostly pages: page+1 (0 free, ~0 removed), readers, reads
	 * and writes averaged over the samples that saw it (each sample
	 * keeps 7/8 of the sum so far, then adds its own) */
	uint32_t repl_page[MGR_PP_REPL];
	uint64_t repl_readers[MGR_PP_REPL];
	uint64_t repl_marked[MGR_PP_REPL]; /* marked at repl_home */
	uint16_t repl_home[MGR_PP_REPL];
	uint32_t repl_reads[MGR_PP_REPL], repl_writes[MGR_PP_REPL];
	struct mgr_pp_shared shared[MGR_PP_SHARED];
	uint32_t nshared;
	/* the rate limit */
	double tokens;
	uint64_t tokens_ms;
	/* so far */
	uint64_t moves, pushes, unmarks, limited, held_back, left;
};

/* A VM's policy state for a region of `members` members, all up. */
void mgr_pp_vm_init(struct mgr_pp_vm *v, enum mgr_pp_mode mode,
		    uint16_t members, uint64_t now_ms);

/* Decisions from one sample of member `home` (the pages it homes),
 * hottest first as sampled; at most max into out. Returns how many. */
uint32_t mgr_pp_decide(struct mgr_pp_vm *v, const struct mgr_pp_config *c,
		       uint16_t home, const struct mgr_pp_sample *s, uint32_t n,
		       uint64_t now_ms, struct mgr_pp_decision *out,
		       uint32_t max);

/* "off", "migrate", "replicate", "all" and back; -1 for another word. */
int mgr_pp_mode_parse(const char *s);
const char *mgr_pp_mode_name(enum mgr_pp_mode m);

#endif
