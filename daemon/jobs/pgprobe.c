/* SPDX-License-Identifier: MIT
 *
 * PostgreSQL probe thread.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store/pgconn.h"
#include "jobs/pgprobe.h"
#include "rd/log.h"

static atomic_int pg_ok;
static atomic_int stop_flag;
static pthread_t thread;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static const struct rd_config *config;

int rd_pgprobe_ok(void)
{
    return atomic_load(&pg_ok);
}

static void *probe_main(void *arg)
{
    (void)arg;
    rd_log_set_thread_name("pgprobe");
    PGconn *conn = NULL;
    /* Bounded waits: a dead server must not hold the probe (or shutdown) for long. */
    struct rd_pgparams params;
    char err[300];
    if (rd_pgparams_init(&params, config->pg_conninfo, "redeemd-probe", "-c statement_timeout=2000",
                         err, sizeof(err)) < 0) {
        rd_error("event=pg_conninfo_invalid err=\"%s\"", err);
        return NULL;
    }
    int was_ok = -1;
    while (!atomic_load(&stop_flag)) {
        if (!conn || PQstatus(conn) != CONNECTION_OK) {
            if (conn)
                PQfinish(conn);
            conn = rd_pg_connect(&params);
        }
        int ok = 0;
        if (PQstatus(conn) == CONNECTION_OK) {
            PGresult *res = PQexec(conn, "SELECT 1");
            ok = PQresultStatus(res) == PGRES_TUPLES_OK;
            PQclear(res);
        }
        if (ok != was_ok) {
            if (ok)
                rd_info("event=postgres_reachable");
            else {
                char msg[256];
                snprintf(msg, sizeof(msg), "%s", conn ? PQerrorMessage(conn) : "no connection");
                msg[strcspn(msg, "\n")] = '\0'; /* libpq messages end with a newline */
                rd_warn("event=postgres_unreachable err=\"%s\"", msg);
            }
            was_ok = ok;
        }
        atomic_store(&pg_ok, ok);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += config->pg_probe_interval_ms / 1000;
        ts.tv_nsec += (long)(config->pg_probe_interval_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&mu);
        if (!atomic_load(&stop_flag))
            pthread_cond_timedwait(&cv, &mu, &ts);
        pthread_mutex_unlock(&mu);
    }
    if (conn)
        PQfinish(conn);
    rd_pgparams_free(&params);
    return NULL;
}

int rd_pgprobe_start(const struct rd_config *cfg)
{
    config = cfg;
    return pthread_create(&thread, NULL, probe_main, NULL) == 0 ? 0 : -1;
}

void rd_pgprobe_stop(void)
{
    pthread_mutex_lock(&mu);
    atomic_store(&stop_flag, 1);
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(thread, NULL);
}
