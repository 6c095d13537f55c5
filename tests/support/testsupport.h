/*
 * Helpers for cellmon tests: temporary directories, child processes that
 * cannot outlive the test, bounded waits, and running a command to
 * capture its output.
 *
 * Every process started with ts_spawn() gets PR_SET_PDEATHSIG(SIGKILL)
 * and is remembered; ts_kill_all() (also registered with atexit) kills
 * the ones still running, so a failing test leaves nothing behind.
 */
#ifndef CELL_TESTSUPPORT_H
#define CELL_TESTSUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* mkdtemp under $TMPDIR or /tmp; aborts the test on failure. */
char *ts_tmpdir(const char *prefix);
/* rm -rf. */
void ts_rmtree(const char *path);

/* Starts argv[0] with stdout and stderr appended to log_path (or
 * inherited when NULL). Returns the pid, or -1. */
pid_t ts_spawn(char *const argv[], const char *log_path);
/* Sends sig (0: none, just wait) and waits up to timeout_ms for the
 * exit; SIGKILL after that. The process is forgotten either way. Returns
 * the wait status, or -1 on timeout. */
int ts_stop(pid_t pid, int sig, unsigned timeout_ms);
void ts_kill_all(void);
/* SIGKILLs every process (not started by ts_spawn, e.g. by a script)
 * whose command line contains needle. Returns how many. */
int ts_kill_matching(const char *needle);

/* Runs argv (argv[0] looked up in PATH when it has no slash) to
 * completion within timeout_ms; captures stdout (and stderr
 * too with merge_stderr) into *out (malloc'd, NUL-terminated). Returns the
 * exit code, or -1 on timeout. */
int ts_run(char *const argv[], unsigned timeout_ms, char **out,
	   bool merge_stderr);

/* Polls pred(arg) every 20 ms until true or timeout_ms. */
bool ts_wait_for(bool (*pred)(void *), void *arg, unsigned timeout_ms);

/* Reads a whole file (malloc'd, NUL-terminated), or NULL. */
char *ts_read_file(const char *path);
/* Whether the file (a log) contains text; says on stdout when not. */
bool ts_file_has(const char *path, const char *text);

uint64_t ts_now_ms(void);
/* The median of v[0..n) (sorted in place); 0 when n is 0. */
double ts_median(double *v, size_t n);

/* Reads <state_dir>/manager.addr, written by a manager once it listens:
 * its agent and ctl addresses (host:port). Waits up to timeout_ms for the
 * file; false if it did not appear. Either output may be NULL. */
bool ts_manager_addrs(const char *state_dir, char *agent, size_t alen,
		      char *ctl, size_t clen, unsigned timeout_ms);

/* Sends `request` (a whole HTTP/1.0 request, or any bytes) to
 * 127.0.0.1:port and reads the answer until the server closes, at most
 * 5 s. Returns the status code (0: no status line) and the body in *body
 * (malloc'd; may be NULL). -1 if it could not connect. */
int ts_http(int port, const char *request, char **body);
/* GET path: ts_http with a plain request. */
int ts_http_get(int port, const char *path, char **body);

/* Runs tests/support/parse_metrics.py on text (the Prometheus parser and
 * cellmon's naming rules): its JSON, or NULL with the reason printed. */
char *ts_parse_metrics(const char *text);

#endif
