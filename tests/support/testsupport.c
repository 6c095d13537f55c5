/*
 * Test helpers (testsupport.h).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testsupport.h"

#define MAX_CHILDREN 64

static pid_t children[MAX_CHILDREN];
static int nchildren;
static int atexit_done;

uint64_t ts_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

char *ts_tmpdir(const char *prefix)
{
	const char *base = getenv("TMPDIR");
	char path[512];
	char *p;

	snprintf(path, sizeof(path), "%s/%s.XXXXXX",
		 base && *base ? base : "/tmp", prefix);
	p = mkdtemp(path);
	if (!p) {
		perror("mkdtemp");
		abort();
	}
	return strdup(p);
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void ts_rmtree(const char *path)
{
	if (path)
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void forget(pid_t pid)
{
	for (int i = 0; i < nchildren; i++) {
		if (children[i] == pid) {
			children[i] = children[--nchildren];
			return;
		}
	}
}

void ts_kill_all(void)
{
	for (int i = 0; i < nchildren; i++) {
		kill(children[i], SIGKILL);
		waitpid(children[i], NULL, 0);
	}
	nchildren = 0;
}

int ts_kill_matching(const char *needle)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d))) {
		char path[300], cmd[4096];
		pid_t pid = (pid_t)atoi(e->d_name);
		ssize_t len;
		int fd;

		if (pid <= 0 || pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		len = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
		if (len <= 0)
			continue;
		for (ssize_t i = 0; i < len; i++)
			cmd[i] = cmd[i] ? cmd[i] : ' ';
		cmd[len] = '\0';
		if (strstr(cmd, needle) && kill(pid, SIGKILL) == 0) {
			fprintf(stderr,
				"killed a leftover process %d: %.200s\n",
				(int)pid, cmd);
			n++;
		}
	}
	if (d)
		closedir(d);
	return n;
}

pid_t ts_spawn(char *const argv[], const char *log_path)
{
	pid_t parent = getpid(), pid;

	if (!atexit_done) {
		atexit(ts_kill_all);
		atexit_done = 1;
	}
	if (nchildren == MAX_CHILDREN)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (log_path) {
			int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND,
				      0644);

			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
				close(fd);
			}
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	children[nchildren++] = pid;
	return pid;
}

int ts_stop(pid_t pid, int sig, unsigned timeout_ms)
{
	uint64_t end = ts_now_ms() + timeout_ms;
	int status;

	if (pid <= 0)
		return -1;
	kill(pid, sig);
	while (ts_now_ms() < end) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid) {
			forget(pid);
			return status;
		}
		usleep(5000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	forget(pid);
	return -1;
}

int ts_run(char *const argv[], unsigned timeout_ms, char **out,
	   bool merge_stderr)
{
	int pfd[2], status;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	uint64_t end = ts_now_ms() + timeout_ms;
	pid_t pid;

	if (!buf || pipe2(pfd, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(pfd[1], 1);
		if (merge_stderr)
			dup2(pfd[1], 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		struct pollfd p = {pfd[0], POLLIN, 0};
		int left = (int)(end - ts_now_ms());
		ssize_t n;

		if (left <= 0 || poll(&p, 1, left) <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			close(pfd[0]);
			free(buf);
			return -1;
		}
		if (len + 1024 > cap)
			buf = realloc(buf, cap *= 2);
		n = read(pfd[0], buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(pfd[0]);
	buf[len] = '\0';
	waitpid(pid, &status, 0);
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

bool ts_wait_for(bool (*pred)(void *), void *arg, unsigned timeout_ms)
{
	uint64_t end = ts_now_ms() + timeout_ms;

	do {
		if (pred(arg))
			return true;
		usleep(20000);
	} while (ts_now_ms() < end);
	return pred(arg);
}

char *ts_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (buf)
		buf[n] = '\0';
	fclose(f);
	return buf;
}

bool ts_file_has(const char *path, const char *text)
{
	char *s = ts_read_file(path);
	bool has = s && strstr(s, text);

	if (!has)
		printf("# %s lacks \"%s\"\n", path, text);
	free(s);
	return has;
}

/* One "key=value" line's value into out; false if absent. */
static bool addr_line(const char *text, const char *key, char *out, size_t len)
{
	const char *p = strstr(text, key);
	size_t n;

	if (!p)
		return false;
	p += strlen(key);
	n = strcspn(p, "\n");
	if (out)
		snprintf(out, len, "%.*s", (int)n, p);
	return true;
}

bool ts_manager_addrs(const char *state_dir, char *agent, size_t alen,
		      char *ctl, size_t clen, unsigned timeout_ms)
{
	char path[1024];
	uint64_t end = ts_now_ms() + timeout_ms;

	snprintf(path, sizeof(path), "%s/manager.addr", state_dir);
	do {
		char *text = ts_read_file(path);
		bool ok = text && addr_line(text, "agent=", agent, alen) &&
			  addr_line(text, "ctl=", ctl, clen);

		free(text);
		if (ok)
			return true;
		usleep(20 * 1000);
	} while (ts_now_ms() < end);
	return false;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double ts_median(double *v, size_t n)
{
	qsort(v, n, sizeof(v[0]), cmp_double);
	return n ? v[n / 2] : 0;
}

int ts_http(int port, const char *request, char **body)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port)};
	struct timeval tv = {5, 0};
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *sep;
	int fd = socket(AF_INET, SOCK_STREAM, 0), status = 0;
	ssize_t r;

	if (body)
		*body = NULL;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || !buf ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (fd >= 0)
			close(fd);
		free(buf);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(fd, request, strlen(request)) < 0)
		status = 0;
	shutdown(fd, SHUT_WR);
	while ((r = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)r;
		if (cap - len < 1024) {
			char *nb = realloc(buf, cap * 2);

			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	close(fd);
	buf[len] = '\0';
	sscanf(buf, "HTTP/1.%*d %d", &status);
	sep = strstr(buf, "\r\n\r\n");
	if (body && sep)
		*body = strdup(sep + 4);
	free(buf);
	return status;
}

int ts_http_get(int port, const char *path, char **body)
{
	char req[512];

	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n",
		 path);
	return ts_http(port, req, body);
}

char *ts_parse_metrics(const char *text)
{
	char *dir = ts_tmpdir("cellmon-metrics"), path[600], cmd[1400];
	char *argv[] = {"/bin/sh", "-c", cmd, NULL}, *out = NULL;
	FILE *f;
	int rc;

	if (!dir)
		return NULL;
	snprintf(path, sizeof(path), "%s/metrics.txt", dir);
	f = fopen(path, "w");
	if (!f || fputs(text, f) < 0) {
		if (f)
			fclose(f);
		ts_rmtree(dir);
		free(dir);
		return NULL;
	}
	fclose(f);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s < %s",
		 CELLMON_SOURCE_DIR "/tests/support/parse_metrics.py", path);
	rc = ts_run(argv, 30000, &out, false);
	ts_rmtree(dir);
	free(dir);
	if (rc != 0) {
		printf("# parse_metrics.py: exit %d\n", rc);
		free(out);
		return NULL;
	}
	return out;
}
