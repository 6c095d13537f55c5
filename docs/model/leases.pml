/*
 * cellmon's lease rule, as a model for spin (docs/fault-tolerance.md,
 * "Manager outages: peer leases"). Three agents, one manager, one VM;
 * time in ticks of one heartbeat period; every message takes one tick
 * and is lost if its link is down when it arrives. Each run chooses, at
 * each tick, at most one fault event (a link to the manager or between
 * two agents goes down or up, the manager crashes or comes back), up to
 * MAXEV events in all, and checks after every tick:
 *
 *   never two agents running the VM at once (`safe`).
 *
 * An agent runs the VM while it holds it and its published lease end
 * (the later of its manager lease and its peer lease) is in the future:
 * that is what its guest's watchdog enforces even when the agent is
 * hung. The times are ticks; -DL=4 -DP=2 -DDOWNT=6 gives the defaults'
 * proportions (heartbeat 500 ms a tick: lease 2 s, peer vote 1 s, down
 * 3 s), the built-in ones a peer vote that outlasts a restart's
 * messages. Each rule can be broken at build time to see the check fail:
 * -DBROKEN_VOUCH (an agent vouches for whoever asks), -DBROKEN_QUORUM
 * (the manager declares a node down on one acknowledgement, not a
 * majority), -DBROKEN_NOWAIT (it does not wait out the peer votes given
 * before the acknowledgements).
 */
#define N	3
#define Q	2	/* majority of N, this node included */
#ifndef L
#define L	6	/* manager lease */
#endif
#ifndef P
#define P	5	/* peer vote: valid for P after the request was sent */
#endif
#define R	2	/* silence that makes an agent ask for and give votes */
#define SUSP	2	/* silence before suspect (starts a fence round) */
#ifndef DOWNT
#define DOWNT	8	/* silence before down may be declared (> L) */
#endif
#define TMAX	18
#define MAXEV	3
#define NONE	255

#define UP	1
#define SUSPECT	2
#define DOWN	3

byte now = 1;
byte events = 0;

/* links */
bool mlink[N];		/* manager <-> agent i */
bool alink[N * N];	/* agent i <-> agent j, i*N+j == j*N+i */

/* agents */
byte inc[N];		/* incarnation */
byte m_until[N];	/* manager lease end */
byte last_reply[N];	/* last manager reply received */
byte vote_until[N * N];	/* [i*N+j]: until when j's vote for i counts */
byte refuse[N * N];	/* [i*N+k]: i vouches for k only from this inc */
bool vm_here[N];
byte pub[N];		/* published lease end (the guest watchdog's) */

/* messages in flight (sent tick, or 0) */
byte hb_sent[N];	/* heartbeat i -> manager */
bool hb_vm[N];		/* ... says whether i holds the VM */
byte hb_inc[N];
byte hb_refuse[N * N];
byte rep_sent[N];	/* reply manager -> i: the request's tick */
byte rep_refuse[N * N];
byte rep_host[N];	/* ... the VM's host */
bool rep_over[N];	/* ... i's incarnation is over */
byte vreq[N * N];	/* [i*N+j]: i asks j, sent tick (0: none) */
byte vreq_inc[N * N];
byte vrep[N * N];	/* [i*N+j]: j's yes to i: the request's tick */

/* manager */
bool m_alive = true;
byte m_start = 1;	/* tick it (re)started */
byte st[N];		/* UP, SUSPECT, DOWN (persisted) */
byte inc_known[N];	/* persisted */
byte heard[N];
bool round_on[N];
byte ack[N * N];	/* [k*N+x]: when x acknowledged refusing k (0) */
byte host = 0;		/* the VM's node (persisted), NONE: none */
bool run_seen = false;	/* the host said it holds the VM */

#define running(i) (vm_here[i] && now < pub[i])

/* Chooses at most one event this tick. */
inline fault()
{
	if
	:: events >= MAXEV -> skip
	:: events < MAXEV -> skip	/* no event this tick */
	:: events < MAXEV ->
		select(a : 0 .. N - 1);
		mlink[a] = !mlink[a];
		events++
	:: events < MAXEV ->
		select(a : 0 .. N - 1);
		select(b : 0 .. N - 1);
		if
		:: a != b ->
			alink[a * N + b] = !alink[a * N + b];
			alink[b * N + a] = alink[a * N + b];
			events++
		:: else -> skip
		fi
	:: events < MAXEV && m_alive ->
		m_alive = false;
		events++
	:: events < MAXEV && !m_alive ->
		/* restart: persisted state back, the rest afresh */
		m_alive = true;
		m_start = now;
		for (a : 0 .. N - 1) {
			heard[a] = now;
			round_on[a] = false;
			for (b : 0 .. N - 1) { ack[a * N + b] = 0 }
		}
		events++
	fi
}

inline agent_step(i)
{
	/* the manager's reply */
	if
	:: rep_sent[i] != 0 && mlink[i] ->
		last_reply[i] = now;
		if
		:: rep_over[i] ->
			/* declared down: discard, register anew */
			vm_here[i] = false;
			inc[i]++;
			m_until[i] = 0
		:: else ->
			if
			:: rep_sent[i] + L > m_until[i] ->
				m_until[i] = rep_sent[i] + L
			:: else -> skip
			fi;
			for (j : 0 .. N - 1) {
				refuse[i * N + j] = rep_refuse[i * N + j]
			}
			if
			:: rep_host[i] == i -> vm_here[i] = true
			:: else -> skip
			fi
		fi
	:: else -> skip
	fi;
	rep_sent[i] = 0;
	/* votes asked of us */
	for (j : 0 .. N - 1) {
		if
		:: j != i && vreq[j * N + i] != 0 && alink[j * N + i] ->
#ifdef BROKEN_VOUCH
			if
			:: true ->
#else
			if
			:: now - last_reply[i] >= R &&
			   vreq_inc[j * N + i] >= refuse[i * N + j] ->
#endif
				vrep[j * N + i] = vreq[j * N + i]
			:: else -> skip
			fi
		:: else -> skip
		fi;
		vreq[j * N + i] = 0
	}
}

inline agent_collect(i)
{
	for (j : 0 .. N - 1) {
		if
		:: j != i && vrep[i * N + j] != 0 && alink[i * N + j] ->
			if
			:: vrep[i * N + j] + P > vote_until[i * N + j] ->
				vote_until[i * N + j] = vrep[i * N + j] + P
			:: else -> skip
			fi
		:: else -> skip
		fi;
		vrep[i * N + j] = 0
	}
	/* peer lease: with N = 3 one other vote is a majority */
	best = 0;
	for (j : 0 .. N - 1) {
		if
		:: j != i && vote_until[i * N + j] > best ->
			best = vote_until[i * N + j]
		:: else -> skip
		fi
	}
	pub[i] = m_until[i];
	if
	:: best > pub[i] -> pub[i] = best
	:: else -> skip
	fi;
	/* fence: the lease is over */
	if
	:: now >= pub[i] -> vm_here[i] = false
	:: else -> skip
	fi;
	/* send: a heartbeat, and vote requests while the manager is silent */
	hb_sent[i] = now;
	hb_vm[i] = vm_here[i];
	hb_inc[i] = inc[i];
	for (j : 0 .. N - 1) {
		hb_refuse[i * N + j] = refuse[i * N + j];
		if
		:: j != i && now - last_reply[i] >= R ->
			vreq[i * N + j] = now;
			vreq_inc[i * N + j] = inc[i]
		:: else -> skip
		fi
	}
}

/* Does a majority of the other nodes than k acknowledge refusing k, each
 * at least P ticks ago? (N = 3: both others.) */
inline quorum_acked(k, ok)
{
	c = 0;
	for (x : 0 .. N - 1) {
#if defined(BROKEN_NOWAIT)
		if
		:: x != k && ack[k * N + x] != 0 -> c++
		:: else -> skip
		fi
#else
		if
		:: x != k && ack[k * N + x] != 0 && ack[k * N + x] + P <= now ->
			c++
		:: else -> skip
		fi
#endif
	}
#ifdef BROKEN_QUORUM
	ok = (c >= 1)
#else
	ok = (c >= Q)
#endif
}

inline manager_step()
{
	/* heartbeats */
	for (i : 0 .. N - 1) {
		if
		:: hb_sent[i] != 0 && mlink[i] ->
			if
			:: st[i] == DOWN && hb_inc[i] == inc_known[i] ->
				rep_over[i] = true
			:: st[i] == DOWN && hb_inc[i] > inc_known[i] ->
				/* a new incarnation registers */
				inc_known[i] = hb_inc[i];
				st[i] = UP;
				rep_over[i] = false
			:: else -> rep_over[i] = false
			fi;
			if
			:: st[i] != DOWN ->
				heard[i] = now;
				if
				:: st[i] == SUSPECT ->
					st[i] = UP;
					round_on[i] = false;
					for (k : 0 .. N - 1) { ack[i * N + k] = 0 }
				:: else -> skip
				fi;
				for (k : 0 .. N - 1) {
					if
					:: round_on[k] && ack[k * N + i] == 0 &&
					   hb_refuse[i * N + k] > inc_known[k] ->
						ack[k * N + i] = now
					:: else -> skip
					fi
				}
				/* the host's vCPU ended (fenced): restart */
				if
				:: host == i && hb_vm[i] -> run_seen = true
				:: host == i && !hb_vm[i] && run_seen ->
					host = NONE
				:: else -> skip
				fi
			:: else -> skip
			fi;
			rep_sent[i] = hb_sent[i]
		:: else -> skip
		fi;
		hb_sent[i] = 0
	}
	/* timeouts */
	for (i : 0 .. N - 1) {
		if
		:: st[i] == UP && now - heard[i] >= SUSP ->
			st[i] = SUSPECT;
			round_on[i] = true
		:: st[i] == SUSPECT && now - heard[i] >= DOWNT &&
		   now - m_start >= DOWNT ->
			quorum_acked(i, ok);
			if
			:: ok ->
				st[i] = DOWN;
				round_on[i] = false;
				if
				:: host == i -> host = NONE
				:: else -> skip
				fi
			:: else -> skip
			fi
		:: else -> skip
		fi
	}
	/* replies carry the refusals and the VM's host */
	for (i : 0 .. N - 1) {
		for (k : 0 .. N - 1) {
			if
			:: round_on[k] || st[k] == DOWN ->
				rep_refuse[i * N + k] = inc_known[k] + 1
			:: else ->
				rep_refuse[i * N + k] = inc_known[k]
			fi
		}
		rep_host[i] = host
	}
}

/* the temporaries of the inlines (they are macros: one set for all) */
byte i, j, k, a, b, h, x, c, best;
bool ok;

init {
	d_step {
		for (i : 0 .. N - 1) {
			mlink[i] = true;
			st[i] = UP;
			heard[i] = 1;
			m_until[i] = 1 + L;
			last_reply[i] = 1;
			for (j : 0 .. N - 1) { alink[i * N + j] = true }
		}
		vm_here[0] = true;
		run_seen = true
	}
	do
	:: now < TMAX ->
		fault();
		/* the manager places a VM that has no node on any node up */
		if
		:: m_alive && host == NONE ->
			select(h : 0 .. N - 1);
			if
			:: st[h] == UP -> host = h; run_seen = false
			:: else -> skip
			fi
		:: else -> skip
		fi;
		d_step {
			for (i : 0 .. N - 1) { agent_step(i) }
			for (i : 0 .. N - 1) { agent_collect(i) }
			if
			:: m_alive -> manager_step()
			:: else ->
				for (i : 0 .. N - 1) { hb_sent[i] = 0 }
			fi;
			/* the VM's state as of this tick, the guests' view */
			assert(!(running(0) && running(1)) &&
			       !(running(0) && running(2)) &&
			       !(running(1) && running(2)));
			now++
		}
	:: now >= TMAX -> break
	od
}
