/*
 * The feeding loop the connection fuzzers share (fuzz.h): the input
 * written in pieces, as a network would deliver it, into the far end of
 * a socketpair, the event loop run after each piece and what the
 * connection answers drained, until it closes or the input is spent.
 */
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "fuzz.h"

void fuzz_feed(struct event_base *base, int fd, const uint8_t *data,
	       size_t size, const int *gone)
{
	size_t off = 0;
	char sink[4096];

	for (int rounds = 0; rounds < 10000 && !*gone; rounds++) {
		if (off < size) {
			size_t chunk = size - off > 1000 ? 1000 : size - off;
			ssize_t w = write(fd, data + off, chunk);

			if (w > 0)
				off += (size_t)w;
		} else if (rounds > 0) {
			shutdown(fd, SHUT_WR);
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
		while (read(fd, sink, sizeof(sink)) > 0)
			;
		if (off >= size && rounds > 2)
			break;
	}
}
