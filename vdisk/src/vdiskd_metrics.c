/*
 * The disk server's /metrics (cell/metrics.h), served on metrics_listen
 * when it is set: NBD clients connected, and requests, errors, bytes and
 * service times by command (read, write, flush, trim, other), over the
 * clients gone and the ones connected now.
 *
 * Event-loop thread; the connected clients' counters are read with
 * atomic loads under clients_mu (nbd.h).
 */
#include <string.h>

#include "cell/log.h"
#include "cell/metrics.h"
#include "nbd.h"
#include "vdiskd.h"

#define MOD "vdiskd"

static void fill(struct cell_metrics *m, void *arg)
{
	struct nbd_conn_stats st;
	double bounds[NBD_LAT_BOUNDS];
	int clients;

	(void)arg;
	pthread_mutex_lock(&D.clients_mu);
	st = D.gone;
	for (int i = 0; i < D.cfg.max_clients; i++)
		if (D.clients[i].used)
			nbd_stats_add(&st, &D.clients[i].st);
	clients = D.nclients;
	pthread_mutex_unlock(&D.clients_mu);
	cell_metrics_family(m, "cellmon_vdiskd_info", CELL_METRIC_GAUGE,
			    "1, labelled with the disk server's version");
	cell_metrics_int(m, "cellmon_vdiskd_info",
			 CELL_LABELS("version", CELLMON_VERSION), 1);
	cell_metrics_family(m, "cellmon_nbd_clients", CELL_METRIC_GAUGE,
			    "NBD connections being served");
	cell_metrics_int(m, "cellmon_nbd_clients", NULL, (uint64_t)clients);
	cell_metrics_family(m, "cellmon_nbd_requests_total",
			    CELL_METRIC_COUNTER, "NBD requests, by command");
	for (int k = 0; k < NBD_STAT_KINDS; k++)
		cell_metrics_int(m, "cellmon_nbd_requests_total",
				 CELL_LABELS("command", nbd_stat_kind_names[k]),
				 st.cmd[k].requests);
	cell_metrics_family(m, "cellmon_nbd_errors_total", CELL_METRIC_COUNTER,
			    "NBD requests answered with an error, by command");
	for (int k = 0; k < NBD_STAT_KINDS; k++)
		cell_metrics_int(m, "cellmon_nbd_errors_total",
				 CELL_LABELS("command", nbd_stat_kind_names[k]),
				 st.cmd[k].errors);
	cell_metrics_family(m, "cellmon_nbd_bytes_total", CELL_METRIC_COUNTER,
			    "bytes read and written by NBD clients");
	for (int k = NBD_STAT_READ; k <= NBD_STAT_WRITE; k++)
		cell_metrics_int(m, "cellmon_nbd_bytes_total",
				 CELL_LABELS("command", nbd_stat_kind_names[k]),
				 st.cmd[k].bytes);
	cell_metrics_family(
		m, "cellmon_nbd_request_duration_seconds",
		CELL_METRIC_HISTOGRAM,
		"time from an NBD request's header to its reply, by "
		"command");
	memcpy(bounds, nbd_lat_bounds_s, sizeof(bounds));
	for (int k = 0; k < NBD_STAT_KINDS; k++)
		cell_metrics_histogram(
			m, "cellmon_nbd_request_duration_seconds",
			CELL_LABELS("command", nbd_stat_kind_names[k]), bounds,
			st.cmd[k].lat, NBD_LAT_BOUNDS,
			(double)st.cmd[k].lat_us / 1e6);
	cell_metrics_rpc_errors(m, NULL); /* the admin link */
}

int vdiskd_metrics_start(struct event_base *base)
{
	return cell_metrics_start(base, D.cfg.metrics_listen, fill, NULL, MOD,
				  &D.metrics, D.metrics_addr,
				  sizeof(D.metrics_addr));
}

void vdiskd_metrics_stop(void)
{
	cell_metrics_server_free(D.metrics);
	D.metrics = NULL;
}
