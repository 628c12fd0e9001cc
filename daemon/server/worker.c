/* SPDX-License-Identifier: MIT
 *
 * Worker threads: setup, the loop, drain and stop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "server/http.h"
#include "rd/log.h"
#include "server/worker.h"

void rd_worker_random(struct rd_worker *w, void *buf, size_t n)
{
    uint8_t *out = buf;
    while (n > 0) {
        if (w->rnd_used == sizeof(w->rnd)) {
            size_t got = 0;
            while (got < sizeof(w->rnd)) {
                ssize_t k = getrandom(w->rnd + got, sizeof(w->rnd) - got, 0);
                if (k < 0 && errno != EINTR) {
                    rd_error("event=getrandom_failed err=\"%s\"", strerror(errno));
                    abort(); /* without a CSPRNG no id or code may be issued */
                }
                if (k > 0)
                    got += (size_t)k;
            }
            w->rnd_used = 0;
        }
        size_t take = sizeof(w->rnd) - w->rnd_used;
        if (take > n)
            take = n;
        memcpy(out, w->rnd + w->rnd_used, take);
        /* bytes handed out are wiped so the pool never leaks old randomness */
        memset(w->rnd + w->rnd_used, 0, take);
        w->rnd_used += take;
        out += take;
        n -= take;
    }
}

int rd_worker_random_cb(void *buf, size_t n, void *arg)
{
    rd_worker_random(arg, buf, n);
    return 0;
}

static void on_redis_ready(struct rd_redis *r, void *arg)
{
    struct rd_worker *w = arg;
    (void)r;
    rd_apikeys_reload(&w->keys);
}

static void on_relisten(evutil_socket_t fd, short what, void *arg)
{
    struct rd_worker *w = arg;
    (void)fd;
    (void)what;
    if (w->listener && !w->stopping)
        evconnlistener_enable(w->listener);
}

/* On EMFILE a listener without an error callback would spin: pause it and try again
 * shortly, while existing connections finish and free descriptors. */
static _Thread_local struct rd_worker *current_worker;

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    /* arg is the server core's; the worker comes from the thread, which runs exactly one
     * listener */
    struct rd_worker *w = current_worker;
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    rd_warn("event=accept_error err=\"%s\" action=pause_100ms", evutil_socket_error_to_string(err));
    evconnlistener_disable(l);
    struct timeval tv = {0, 100000};
    evtimer_add(w->relisten_ev, &tv);
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    struct rd_worker *w = arg;
    (void)fd;
    (void)what;
    if (w->inflight > 0 && rd_mono_ms() < w->stop_deadline_ms)
        return;
    if (w->inflight > 0)
        rd_warn("event=shutdown_deadline inflight=%d", w->inflight);
    event_del(w->drain_ev);
    event_base_loopexit(w->base, NULL);
}

static void on_ctl(evutil_socket_t fd, short what, void *arg)
{
    struct rd_worker *w = arg;
    (void)fd;
    (void)what;
    if (w->stopping)
        return;
    w->stopping = 1;
    w->stop_deadline_ms = rd_mono_ms() + (int64_t)w->cfg->shutdown_timeout_s * 1000;
    rd_httpd_drain(w->http); /* frees the listener */
    w->listener = NULL;
    rd_info("event=draining inflight=%d", w->inflight);
    struct timeval tv = {0, 10000};
    event_add(w->drain_ev, &tv);
}

int rd_worker_init(struct rd_worker *w, int idx, const struct rd_config *cfg, int port,
                   int *bound_port)
{
    memset(w, 0, sizeof(*w));
    w->idx = idx;
    w->cfg = cfg;
    w->rnd_used = sizeof(w->rnd);
    snprintf(w->name, sizeof(w->name), "w%d", idx);
    /* The changelist folds the add/remove pairs evhttp and hiredis make on a socket within
     * one loop pass into one epoll_ctl, or none (fewer syscalls per request). */
    struct event_config *ecfg = event_config_new();
    if (!ecfg)
        return -1;
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    if (!w->base)
        return -1;
    struct rd_httpd_limits lim = {
        .max_header_bytes = (size_t)cfg->max_header_bytes,
        .max_body_bytes = (size_t)cfg->max_body_bytes,
        .idle_ms = cfg->idle_timeout_s * 1000,
        .request_ms = cfg->request_timeout_s * 1000,
        .write_ms = cfg->idle_timeout_s * 1000,
        .max_connections = cfg->max_connections,
    };
    w->http = rd_httpd_new(w->base, &lim, &w->hstats, rd_http_dispatch, rd_http_refuse, w);
    if (!w->http)
        return -1;

    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, cfg->listen_addr, &sin.sin_addr);
    struct evconnlistener *l = evconnlistener_new_bind(
        w->base, NULL, NULL,
        LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
        1024, (struct sockaddr *)&sin, sizeof(sin));
    if (!l) {
        rd_error("event=listen_failed addr=%s port=%d err=\"%s\"", cfg->listen_addr, port,
                 strerror(errno));
        return -1;
    }
    w->listener = l;
    rd_httpd_serve(w->http, l);
    w->relisten_ev = evtimer_new(w->base, on_relisten, w);
    evconnlistener_set_error_cb(l, on_accept_error);
    struct sockaddr_in got;
    socklen_t gl = sizeof(got);
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&got, &gl);
    *bound_port = ntohs(got.sin_port);

    w->ctl_ev = event_new(w->base, -1, 0, on_ctl, w);
    w->drain_ev = event_new(w->base, -1, EV_PERSIST, on_drain, w);
    if (!w->ctl_ev || !w->drain_ev || !w->relisten_ev)
        return -1;
    event_add(w->ctl_ev, NULL);
    return 0;
}

static void *worker_main(void *arg)
{
    struct rd_worker *w = arg;
    rd_log_set_thread_name(w->name);
    current_worker = w;
    if (rd_redis_start(&w->redis, w->base, w->cfg, on_redis_ready, w) < 0 ||
        rd_apikeys_start(&w->keys, w->base, &w->redis, w->cfg->key_refresh_ms) < 0 ||
        rd_pgpool_init(&w->pgpool, w->base, w->cfg) < 0) {
        rd_error("event=worker_setup_failed");
        abort();
    }
    event_base_dispatch(w->base);
    /* Stop order: what can still answer a request first (Redis calls complete with "outcome
     * unknown", pending reads fail; both answer 503), the connections last. Freeing the
     * connections first left pending callbacks answering freed requests. */
    rd_redis_stop(&w->redis);
    rd_pgpool_free(&w->pgpool);
    rd_apikeys_stop(&w->keys);
    if (w->inflight > 0)
        rd_error("event=unanswered_at_exit inflight=%d", w->inflight);
    /* one more pass writes those last answers out where the socket takes them at once */
    event_base_loop(w->base, EVLOOP_NONBLOCK);
    rd_httpd_free(w->http);
    w->http = NULL;
    rd_info("event=worker_stopped");
    return NULL;
}

int rd_worker_start(struct rd_worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void rd_worker_request_stop(struct rd_worker *w)
{
    event_active(w->ctl_ev, EV_TIMEOUT, 0);
}

void rd_worker_join(struct rd_worker *w)
{
    pthread_join(w->thread, NULL);
    while (w->spare) {
        struct rd_req *r = w->spare;
        w->spare = *(struct rd_req **)r;
        free(r);
    }
    event_free(w->ctl_ev);
    event_free(w->drain_ev);
    event_free(w->relisten_ev);
    event_base_free(w->base);
}
