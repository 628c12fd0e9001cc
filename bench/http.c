/* SPDX-License-Identifier: MIT
 *
 * The bench's HTTP: an asynchronous keep-alive client on bufferevents for the load, and a
 * blocking one for setup and checks. Only what redeemd speaks: HTTP/1.1 responses with
 * Content-Length (redeemd never chunks a JSON answer).
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "rd/rdtime.h"

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

int conn_open(struct conn *c)
{
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = bufferevent_socket_new(c->b->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev)
        return -1;
    c->connected = 0;
    c->have_head = 0;
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&c->b->addr, sizeof(c->b->addr)) <
        0) {
        bufferevent_free(c->bev);
        c->bev = NULL;
        return -1;
    }
    return 0;
}

void conn_send(struct conn *c)
{
    if (!c->bev && conn_open(c) < 0) {
        bench_on_transport_error(c);
        return;
    }
    c->have_head = 0;
    c->job.sent = rd_mono_us();
    bench_write_request(c, bufferevent_get_output(c->bev));
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->connected = 1;
        return;
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        bufferevent_free(c->bev);
        c->bev = NULL;
        if (c->busy)
            bench_on_transport_error(c);
    }
}

/* Parses the head once it is complete; 1 when done, 0 when more is needed, -1 on garbage. */
static int parse_head(struct conn *c, struct evbuffer *in)
{
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0)
        return evbuffer_get_length(in) > 65536 ? -1 : 0;
    c->head_len = (size_t)end.pos + 4;
    char *h = (char *)evbuffer_pullup(in, (ssize_t)c->head_len);
    if (c->head_len < 12 || strncmp(h, "HTTP/1.", 7) != 0)
        return -1;
    c->status = atoi(h + 9);
    c->clen = -1;
    c->replayed = 0;
    c->close_after = 0;
    const char *p = memchr(h, '\n', c->head_len), *stop = h + c->head_len;
    while (p && p + 1 < stop) {
        p++;
        const char *eol = memchr(p, '\n', (size_t)(stop - p));
        if (!eol)
            break;
        size_t n = (size_t)(eol - p);
        if (n > 15 && strncasecmp(p, "Content-Length:", 15) == 0)
            c->clen = strtol(p + 15, NULL, 10);
        else if (n > 11 && strncasecmp(p, "Connection:", 11) == 0)
            c->close_after = strncasecmp(p + 11, " close", 6) == 0;
        else if (n > 20 && strncasecmp(p, "Idempotent-Replayed:", 20) == 0)
            c->replayed = strncasecmp(p + 20, " true", 5) == 0;
        p = eol;
    }
    if (c->clen < 0)
        return -1;
    c->have_head = 1;
    return 1;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        if (!c->have_head) {
            int r = parse_head(c, in);
            if (r == 0)
                return;
            if (r < 0) {
                fprintf(stderr, "redeem-bench: unparsable response\n");
                on_event(bev, BEV_EVENT_ERROR, c);
                return;
            }
        }
        size_t need = c->head_len + (size_t)c->clen;
        if (evbuffer_get_length(in) < need)
            return;
        char *all = (char *)evbuffer_pullup(in, (ssize_t)need);
        int status = c->status, replayed = c->replayed, close_after = c->close_after;
        c->have_head = 0;
        if (!c->busy) {
            evbuffer_drain(in, need); /* nothing asked: ignore */
            continue;
        }
        /* the answer is handled before draining: body points into the buffer */
        c->busy = 0;
        bench_on_answer(c, status, all + c->head_len, (size_t)c->clen, replayed);
        if (!c->bev)
            return;
        evbuffer_drain(bufferevent_get_input(c->bev), need);
        if (close_after) {
            bufferevent_free(c->bev);
            c->bev = NULL;
            return;
        }
        if (c->busy) /* the answer handler already queued the next request */
            return;
    }
}

/* ---- blocking client ------------------------------------------------------------------ */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int sync_http(const struct bench *b, const char *method, const char *path, const char *key,
              const char *json, char **body)
{
    *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)&b->addr, sizeof(b->addr)) < 0) {
        close(fd);
        return -1;
    }
    char *req = NULL;
    size_t jl = json ? strlen(json) : 0;
    int n = asprintf(&req,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s%s%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, b->o.host, key ? "Authorization: Bearer " : "", key ? key : "",
                     key ? "\r\n" : "", jl, json ? json : "");
    if (n < 0 || write_all(fd, req, (size_t)n) < 0) {
        free(req);
        close(fd);
        return -1;
    }
    free(req);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t k = read(fd, buf + len, cap - len - 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    close(fd);
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || !sep) {
        free(buf);
        return -1;
    }
    int status = atoi(buf + 9);
    memmove(buf, sep + 4, len - (size_t)(sep + 4 - buf) + 1);
    *body = buf;
    return status;
}

double metrics_value(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}
