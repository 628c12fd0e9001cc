/* SPDX-License-Identifier: MIT
 *
 * redeemd: configuration, signals, worker start and stop. The main thread owns the only
 * event_base that handles signals (libevent allows one); workers block all signals.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netdb.h>
#include <event2/thread.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "jobs/batcher.h"
#include "server/metrics.h"
#include "store/pgcancel.h"
#include "store/pgconn.h"
#include "jobs/pgprobe.h"
#include "jobs/webhooks.h"
#include "jobs/shipper.h"
#include "rd/config.h"
#include "rd/log.h"
#include "server/worker.h"

extern char **environ;

static struct rd_worker *workers;
static int nworkers;

static void emit_line(const char *line)
{
    fprintf(stdout, "%s\n", line);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct event_base *base = arg;
    (void)what;
    rd_info("event=signal sig=%d action=shutdown", (int)sig);
    for (int i = 0; i < nworkers; i++)
        rd_worker_request_stop(&workers[i]);
    event_base_loopexit(base, NULL);
}

static void libevent_log(int severity, const char *msg)
{
    rd_log(severity >= EVENT_LOG_ERR    ? RD_LOG_ERROR
           : severity >= EVENT_LOG_WARN ? RD_LOG_WARN
                                        : RD_LOG_DEBUG,
           "event=libevent msg=\"%s\"", msg);
}

static void libevent_fatal(int err)
{
    rd_error("event=libevent_fatal err=%d", err);
    abort();
}

int main(int argc, char **argv)
{
    static struct rd_config cfg;
    char err[1400];
    bool help;
    /* --check: the configuration is read and checked, nothing is started (packaging, and
     * an operator before a restart) */
    int check = 0, kept = 0;
    for (int i = 0; i < argc; i++)
        if (i > 0 && strcmp(argv[i], "--check") == 0)
            check = 1;
        else
            argv[kept++] = argv[i];
    argc = kept;
    if (rd_config_load(&cfg, argc, argv, environ, &help, err, sizeof(err)) < 0) {
        fprintf(stderr, "redeemd: %s\n", err);
        return 2;
    }
    if (help) {
        rd_config_usage("redeemd", emit_line);
        emit_line("  --check                  read and check the configuration, start nothing");
        return 0;
    }
    /* hiredis would resolve a name with blocking getaddrinfo on every (re)connect, inside
     * a worker's event loop; resolve it once here instead. */
    struct in_addr probe;
    if (inet_pton(AF_INET, cfg.redis_host, &probe) != 1) {
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
        int gai = getaddrinfo(cfg.redis_host, NULL, &hints, &res);
        if (gai != 0) {
            fprintf(stderr, "redeemd: redis_host: cannot resolve \"%s\": %s\n", cfg.redis_host,
                    gai_strerror(gai));
            return 2;
        }
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof(ip));
        freeaddrinfo(res);
        rd_info("event=redis_host_resolved name=%s addr=%s", cfg.redis_host, ip);
        snprintf(cfg.redis_host, sizeof(cfg.redis_host), "%s", ip);
    }
    /* a conninfo libpq cannot parse stops the start here, not as reconnect noise later */
    struct rd_pgparams pgcheck;
    char pgerr[300];
    if (rd_pgparams_init(&pgcheck, cfg.pg_conninfo, NULL, NULL, pgerr, sizeof(pgerr)) < 0) {
        fprintf(stderr, "redeemd: %s\n", pgerr);
        return 2;
    }
    rd_pgparams_free(&pgcheck);
    if (check) {
        printf("redeemd: the configuration is valid\n");
        return 0;
    }
    if (cfg.workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg.workers = n > 0 ? (int)(n > 256 ? 256 : n) : 1;
    }
    rd_log_set_level(rd_log_level_parse(cfg.log_level));
    /* every connection is a descriptor: make room for max_connections on every worker */
    struct rlimit nofile;
    rlim_t need = (rlim_t)cfg.workers * (rlim_t)cfg.max_connections + 512;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < need) {
        nofile.rlim_cur = need < nofile.rlim_max ? need : nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0 || nofile.rlim_cur < need)
            rd_warn("event=nofile_limit limit=%llu needed=%llu msg=\"max_connections cannot "
                    "be reached on every worker; raise the hard limit (ulimit -Hn)\"",
                    (unsigned long long)nofile.rlim_cur, (unsigned long long)need);
    }
    event_set_log_callback(libevent_log);
    event_set_fatal_callback(libevent_fatal);
    if (evthread_use_pthreads() < 0) {
        fprintf(stderr, "redeemd: libevent has no pthreads support\n");
        return 1;
    }
    json_object_seed(0);
    signal(SIGPIPE, SIG_IGN);
    if (cfg.test_clock)
        rd_warn("event=test_clock_enabled msg=\"X-Redeemd-Now is honoured: tests only\"");

    nworkers = cfg.workers;
    workers = calloc((size_t)nworkers, sizeof(*workers));
    if (!workers)
        abort();
    /* Bind worker 0 first: with port 0 the others must join the port it was given. */
    int port = cfg.port;
    for (int i = 0; i < nworkers; i++) {
        int got;
        if (rd_worker_init(&workers[i], i, &cfg, port, &got) < 0) {
            fprintf(stderr, "redeemd: cannot listen on %s:%d\n", cfg.listen_addr, port);
            return 1;
        }
        port = got;
    }

    rd_metrics_register(workers, nworkers);

    /* Workers inherit this mask: signals reach only the main thread's base. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (cfg.shipper && rd_shipper_start(&cfg) < 0) {
        fprintf(stderr, "redeemd: cannot start the ledger shipper\n");
        return 1;
    }
    if (cfg.batches && rd_batcher_start(&cfg) < 0) {
        fprintf(stderr, "redeemd: cannot start the batch thread\n");
        return 1;
    }
    if (cfg.webhooks && rd_webhooks_start(&cfg) < 0) {
        fprintf(stderr, "redeemd: cannot start the webhook thread\n");
        return 1;
    }
    if (rd_pgcancel_start() < 0) {
        fprintf(stderr, "redeemd: cannot start the PostgreSQL cancel thread\n");
        return 1;
    }
    if (rd_pgprobe_start(&cfg) < 0) {
        fprintf(stderr, "redeemd: cannot start the PostgreSQL probe\n");
        return 1;
    }
    for (int i = 0; i < nworkers; i++)
        if (rd_worker_start(&workers[i]) < 0) {
            fprintf(stderr, "redeemd: cannot start worker %d\n", i);
            return 1;
        }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    struct event_base *base = event_base_new();
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);

    if (cfg.port_file[0]) {
        char tmp[1100];
        snprintf(tmp, sizeof(tmp), "%s.tmp", cfg.port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 ||
            rename(tmp, cfg.port_file) != 0) {
            fprintf(stderr, "redeemd: cannot write port_file %s\n", cfg.port_file);
            return 1;
        }
    }
    rd_info("event=listening addr=%s port=%d workers=%d redis=%s:%d buckets=%d", cfg.listen_addr,
            port, nworkers, cfg.redis_host, cfg.redis_port, cfg.buckets);

    event_base_dispatch(base);

    for (int i = 0; i < nworkers; i++)
        rd_worker_join(&workers[i]);
    rd_batcher_stop(); /* between two chunks: its job goes back to the queue */
    if (cfg.webhooks)
        rd_webhooks_stop(); /* deliveries under way go out again once their lease ends */
    /* last: entries the workers wrote just before stopping may still go out */
    if (cfg.shipper)
        rd_shipper_stop();
    rd_pgprobe_stop();
    rd_pgcancel_stop(); /* after the workers: the last cancels they asked for go out */
    event_free(sigterm);
    event_free(sigint);
    event_base_free(base);
    free(workers);
    libevent_global_shutdown();
    rd_info("event=stopped");
    return 0;
}
