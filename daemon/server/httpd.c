/* SPDX-License-Identifier: MIT
 *
 * The HTTP/1.1 server core (see httpd.h): connections, request intake, answers.
 *
 * A connection goes through these states:
 *
 *   IDLE     waiting for a request's first byte (idle deadline)
 *   HEAD     reading the head; BODY reading the body (the request's absolute deadline)
 *   APP      the application holds the request (no deadline of ours)
 *   STREAM   a streamed answer is being written
 *   CLOSING  a last answer is being written; then LINGER or the end
 *   LINGER   after a refusal: our side shut, unread input drained for a moment, so that the
 *            client reads the answer instead of a reset
 *
 * After an answer on a keep-alive connection it is IDLE again; bytes already received (a
 * pipelined request) are handled from a deferred callback, never from inside the answer.
 *
 * Answers are written at once, from the callback that makes them (conn_flush); only what the
 * socket does not take waits for a write event, which is disarmed again once the output is
 * out. A write event armed for every answer and disarmed after it cost two epoll_ctl calls
 * and an extra pass of the loop per request (a tenth of a worker's time, bench/README.md).
 * The bufferevent keeps the output, the write event and its timeout; reading is ours
 * (on_readable: one recv per readiness, where libevent's evbuffer_read asks the kernel
 * how much is waiting, an ioctl, before every readv).
 */
#include <errno.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "server/httpd.h"
#include "rd/json_util.h"
#include "rd/log.h"

/* After a refusal, unread input is drained this long before the socket closes. */
#define LINGER_MS 2000
/* A keep-alive connection takes its next request only while less than this is waiting to
 * be written: a client that pipelines without reading cannot make us buffer its answers. */
#define OUT_HIGH (256 * 1024)
/* One read takes at most this much (more waits for the next pass of the loop). */
#define READ_CHUNK 16384

enum cstate { CS_IDLE, CS_HEAD, CS_BODY, CS_APP, CS_STREAM, CS_CLOSING, CS_LINGER };

struct rd_hconn;

struct rd_hreq {
    struct rd_hconn *c;
    struct rd_http_head head;
    char *headbuf; /* the head as received, parsed in place (owned, kept for reuse) */
    size_t headlen, headcap;
    struct rd_sbuf body;
    struct rd_sbuf outh; /* response header lines the application added */
    rd_hreq_gone_cb *on_gone;
    void *gone_arg;
    rd_hreq_drained_cb *on_drained;
    void *drained_arg;
    int refused; /* answered for the core: close (and linger) after it */
};

struct rd_hconn {
    struct rd_httpd *s;
    struct bufferevent *bev; /* NULL once the socket is closed (the client has gone) */
    struct event *rev;       /* readable: on_readable (freed with bev) */
    int read_paused;         /* the input holds in_max: rev is off until it is taken */
    enum cstate state;
    struct event *timer;
    char peer[INET6_ADDRSTRLEN];
    size_t scan; /* rd_http_head_len's position in the head so far */
    struct rd_chunked chunk;
    int keep_alive, gone, linger;
    struct rd_hreq req;
    TAILQ_ENTRY(rd_hconn) link; /* all connections */
    TAILQ_ENTRY(rd_hconn) idle; /* IDLE ones, oldest first */
    int in_idle;
};

TAILQ_HEAD(conn_list, rd_hconn);

struct rd_httpd {
    struct event_base *base;
    struct rd_httpd_limits lim;
    rd_hreq_cb *on_request;
    rd_hreq_refuse_cb *on_refuse;
    void *arg;
    struct evconnlistener *listener;
    struct conn_list all, idle;
    int draining;
    const struct timeval *tv_idle, *tv_request, *tv_linger; /* common timeouts */
    struct timeval tv_write;
    size_t in_max; /* input kept per connection at most: one request's head and body, and more */
    time_t date_sec;
    char date[40];
    struct rd_httpd_stats *st;
};

static void conn_free(struct rd_hconn *c);
static void handle_input(struct rd_hconn *c);

/* Before a request's first byte: nothing of the last one may be seen in a refusal. */
static void reset_request(struct rd_hreq *h)
{
    struct rd_http_head *hd = &h->head;
    hd->method = RD_HM_UNKNOWN;
    hd->method_name = "";
    hd->path = "";
    hd->query = NULL;
    hd->minor = 1;
    hd->nfields = 0;
    hd->content_length = -1;
    hd->chunked = hd->keep_alive = hd->expect_continue = false;
    h->headlen = 0;
    h->body.len = 0;
    h->outh.len = 0;
    h->refused = 0;
}

/* ---- timers and lists ------------------------------------------------------------------ */

static void set_idle(struct rd_hconn *c, int on)
{
    if (on && !c->in_idle)
        TAILQ_INSERT_TAIL(&c->s->idle, c, idle);
    else if (!on && c->in_idle)
        TAILQ_REMOVE(&c->s->idle, c, idle);
    c->in_idle = on;
}

static void set_state(struct rd_hconn *c, enum cstate st)
{
    c->state = st;
    set_idle(c, st == CS_IDLE);
    switch (st) {
    case CS_IDLE:
        evtimer_add(c->timer, c->s->tv_idle);
        break;
    case CS_HEAD: /* the deadline runs from the first byte to the last, however they come */
        evtimer_add(c->timer, c->s->tv_request);
        break;
    case CS_LINGER:
        evtimer_add(c->timer, c->s->tv_linger);
        break;
    case CS_BODY:
        break; /* the head's deadline goes on */
    default:
        evtimer_del(c->timer);
    }
}

/* ---- answering ------------------------------------------------------------------------- */

static const char *reason_of(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static const char *http_date(struct rd_httpd *s)
{
    time_t now = time(NULL);
    if (now != s->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_sec = now;
    }
    return s->date;
}

/* Whether the connection carries another request after this answer. */
static int keeps_alive(const struct rd_hconn *c)
{
    return c->keep_alive && !c->req.refused && !c->s->draining;
}

/* The head of an answer in three pieces, as the iovecs of one writev: the status line and
 * Date (pre), the application's header lines (the request's outh), then framing and
 * connection (post). Framing is "length" (Content-Length: len), or a stream. Both buffers
 * are bounded by what goes in them: the longest reason phrase is 31 bytes, a Date 29, a
 * length 20 digits. */
struct head_parts {
    char pre[96], post[96];
    size_t npre, npost;
};

static size_t put(char *dst, size_t at, const char *s, size_t n)
{
    memcpy(dst + at, s, n);
    return at + n;
}

static void make_head(struct rd_hconn *c, int status, int stream, size_t len, struct head_parts *p)
{
    struct rd_hreq *h = &c->req;
    const char *reason = reason_of(status), *date = http_date(c->s);
    char num[24];
    size_t n = put(p->pre, 0, "HTTP/1.1 ", 9);
    n += rd_fmt_i64(p->pre + n, status < 100 || status > 999 ? 500 : status);
    p->pre[n++] = ' ';
    n = put(p->pre, n, reason, strlen(reason));
    n = put(p->pre, n, "\r\nDate: ", 8);
    n = put(p->pre, n, date, strlen(date));
    p->npre = put(p->pre, n, "\r\n", 2);
    n = 0;
    if (!stream) {
        n = put(p->post, n, "Content-Length: ", 16);
        n = put(p->post, n, num, rd_fmt_i64(num, (int64_t)len));
        n = put(p->post, n, "\r\n", 2);
    } else if (h->head.minor == 1) {
        n = put(p->post, n, "Transfer-Encoding: chunked\r\n", 28);
    } else {
        c->keep_alive = 0; /* an HTTP/1.0 stream ends with the connection */
    }
    if (!keeps_alive(c))
        n = put(p->post, n, "Connection: close\r\n\r\n", 21);
    else if (h->head.minor == 0)
        n = put(p->post, n, "Connection: keep-alive\r\n\r\n", 26);
    else
        n = put(p->post, n, "\r\n", 2);
    p->npost = n;
}

/* The status line and headers into the output (streams, and answers that cannot go at
 * once). */
static void write_head(struct rd_hconn *c, int status, int stream, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct head_parts p;
    make_head(c, status, stream, len, &p);
    evbuffer_add(out, p.pre, p.npre);
    evbuffer_add(out, c->req.outh.buf, c->req.outh.len);
    evbuffer_add(out, p.post, p.npost);
}

/* Writes what the output holds now, as memcached and Redis do: a client that reads its
 * answers has room for them in the socket buffer. What does not fit waits for the write
 * event (and its write timeout: a client that stops reading goes, as before); an error is
 * left for that event to find too, so that every way out passes on_event. */
static void conn_flush(struct rd_hconn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(c->bev) & EV_WRITE))
        return;
    evbuffer_write(out, bufferevent_getfd(c->bev));
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(c->bev, EV_WRITE);
}

static void resume_reading(struct rd_hconn *c)
{
    if (c->read_paused && c->bev &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) < c->s->in_max) {
        c->read_paused = 0;
        event_add(c->rev, NULL);
    }
}

/* A whole answer (head, and body unless NULL; Content-Length len). When nothing waits before
 * it, it goes out in one writev from the pieces where they are; what the socket does not
 * take, or all of it behind waiting output, is copied into the output once. */
static void write_answer(struct rd_hconn *c, int status, const char *body, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct head_parts p;
    make_head(c, status, 0, len, &p);
    struct iovec iov[4] = {{p.pre, p.npre},
                           {c->req.outh.buf, c->req.outh.len},
                           {p.post, p.npost},
                           {(void *)body, body ? len : 0}};
    size_t total = 0, done = 0;
    for (int i = 0; i < 4; i++)
        total += iov[i].iov_len;
    int tried = evbuffer_get_length(out) == 0 && !(bufferevent_get_enabled(c->bev) & EV_WRITE);
    if (tried) {
        ssize_t n = writev(bufferevent_getfd(c->bev), iov, 4);
        if (n > 0)
            done = (size_t)n;
        if (done == total)
            return;
    }
    for (int i = 0; i < 4; i++) { /* the rest, from where the socket stopped */
        if (done >= iov[i].iov_len) {
            done -= iov[i].iov_len;
            continue;
        }
        evbuffer_add(out, (const char *)iov[i].iov_base + done, iov[i].iov_len - done);
        done = 0;
    }
    if (tried) /* the socket is full (or failed): the write event takes over, as in conn_flush */
        bufferevent_enable(c->bev, EV_WRITE);
    else
        conn_flush(c);
}

/* The request is answered: the next one, or the end of the connection. */
static void request_done(struct rd_hconn *c)
{
    struct rd_hreq *h = &c->req;
    h->on_gone = NULL;
    h->on_drained = NULL;
    if (c->gone) {
        conn_free(c);
        return;
    }
    if (!keeps_alive(c)) {
        c->linger = c->linger || h->refused;
        set_state(c, CS_CLOSING);
        /* the write callback ends it once the output is out (or now, if it already is) */
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            bufferevent_trigger(c->bev, EV_WRITE,
                                BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
        return;
    }
    reset_request(h);
    c->scan = 0;
    memset(&c->chunk, 0, sizeof(c->chunk));
    set_state(c, CS_IDLE);
    resume_reading(c);
    /* a request that came in meanwhile (pipelining) is taken from a deferred callback */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) < OUT_HIGH)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void rd_hreq_add_header(struct rd_hreq *h, const char *name, const char *value)
{
    rd_sbuf_addstr(&h->outh, name);
    rd_sbuf_add(&h->outh, ": ", 2);
    /* a value is ours or checked by the caller; a stray line break would split the head */
    size_t n = strcspn(value, "\r\n");
    rd_sbuf_add(&h->outh, value, n);
    rd_sbuf_add(&h->outh, "\r\n", 2);
}

void rd_hreq_reply(struct rd_hreq *h, int status, const char *body, size_t len)
{
    struct rd_hconn *c = h->c;
    if (c->state != CS_APP) {
        rd_error("event=http_double_answer state=%d status=%d", c->state, status);
        return;
    }
    if (!c->gone) /* HEAD: no body, and the Content-Length a GET would have */
        write_answer(c, status, h->head.method == RD_HM_HEAD ? NULL : body, len);
    request_done(c);
}

void rd_hreq_stream_start(struct rd_hreq *h, int status)
{
    struct rd_hconn *c = h->c;
    if (c->state != CS_APP)
        return;
    set_state(c, CS_STREAM);
    if (!c->gone) {
        write_head(c, status, 1, 0);
        conn_flush(c);
    }
}

int rd_hreq_stream_chunk(struct rd_hreq *h, struct evbuffer *data, rd_hreq_drained_cb *drained,
                         void *arg)
{
    struct rd_hconn *c = h->c;
    size_t n = evbuffer_get_length(data);
    if (c->gone || c->state != CS_STREAM) {
        evbuffer_drain(data, n);
        return -1;
    }
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (h->head.method == RD_HM_HEAD || n == 0) {
        evbuffer_drain(data, n);
    } else if (h->head.minor == 1) {
        evbuffer_add_printf(out, "%zx\r\n", n);
        evbuffer_add_buffer(out, data);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add_buffer(out, data);
    }
    h->on_drained = drained;
    h->drained_arg = arg;
    conn_flush(c);
    /* the write callback runs when the output is empty; if it already is, run it soon */
    if (evbuffer_get_length(out) == 0)
        bufferevent_trigger(c->bev, EV_WRITE,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    return 0;
}

void rd_hreq_stream_end(struct rd_hreq *h)
{
    struct rd_hconn *c = h->c;
    if (c->state != CS_STREAM) {
        rd_error("event=http_double_answer state=%d", c->state);
        return;
    }
    if (!c->gone && h->head.minor == 1 && h->head.method != RD_HM_HEAD) {
        bufferevent_write(c->bev, "0\r\n\r\n", 5);
        conn_flush(c);
    }
    c->state = CS_APP; /* request_done moves on from here */
    request_done(c);
}

void rd_hreq_abort(struct rd_hreq *h)
{
    conn_free(h->c);
}

/* ---- a refusal by the core ------------------------------------------------------------- */

static void refuse(struct rd_hconn *c, enum rd_status st, const char *msg)
{
    struct rd_hreq *h = &c->req;
    h->refused = 1;
    c->linger = 1;
    set_state(c, CS_APP);
    c->s->on_refuse(h, st, msg, c->s->arg);
}

/* ---- intake ---------------------------------------------------------------------------- */

static void dispatch(struct rd_hconn *c)
{
    set_state(c, CS_APP);
    c->s->on_request(&c->req, c->s->arg);
}

/* Takes a chunked body from in; returns 1 when it is complete, 0 when more is needed, -1
 * after a refusal. */
static int read_chunked(struct rd_hconn *c, struct evbuffer *in)
{
    struct rd_hreq *h = &c->req;
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            return 0;
        size_t used = 0;
        int rc = rd_chunked_decode(&c->chunk, v.iov_base, v.iov_len, &used, &h->body,
                                   c->s->lim.max_body_bytes);
        if (rc < 0) {
            refuse(c, rc == -2 ? RD_E_PAYLOAD_TOO_LARGE : RD_E_INVALID_REQUEST,
                   rc == -2 ? "the request body is too large" : "malformed chunked body");
            return -1;
        }
        evbuffer_drain(in, used);
        if (rc == 1)
            return 1;
    }
    return 0;
}

/* The head is in h->headbuf[0..headlen): parse it and decide what follows. Returns 1 when
 * the request is complete, 0 when a body is to be read, -1 after a refusal. */
static int take_head(struct rd_hconn *c, struct evbuffer *in)
{
    struct rd_hreq *h = &c->req;
    const char *why;
    enum rd_status st = rd_http_parse_head(h->headbuf, h->headlen, &h->head, &why);
    /* after a refused CONNECT the client may still think it speaks through a tunnel */
    c->keep_alive = h->head.keep_alive && h->head.method != RD_HM_CONNECT;
    if (st != RD_OK) {
        refuse(c, st, why);
        return -1;
    }
    int64_t cl = h->head.content_length;
    if (cl > (int64_t)c->s->lim.max_body_bytes) {
        refuse(c, RD_E_PAYLOAD_TOO_LARGE, "the request body is too large");
        return -1;
    }
    if (!h->head.chunked && cl <= 0)
        return 1;
    /* the client waits for our word before it sends the body */
    if (h->head.expect_continue && evbuffer_get_length(in) == 0) {
        bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        conn_flush(c);
    }
    set_state(c, CS_BODY);
    return 0;
}

static void handle_input(struct rd_hconn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct rd_hreq *h = &c->req;
    const struct rd_httpd_limits *lim = &c->s->lim;
    resume_reading(c);
    if (c->state == CS_CLOSING || c->state == CS_LINGER) {
        evbuffer_drain(in, evbuffer_get_length(in)); /* what follows a last answer */
        return;
    }
    if (c->state == CS_IDLE) {
        if (evbuffer_get_length(in) == 0)
            return;
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) >= OUT_HIGH)
            return; /* answers still waiting for the client: its next request waits too */
        set_state(c, CS_HEAD);
    }
    if (c->state == CS_HEAD) {
        /* the head is copied out as it comes (one copy, however it is split) and searched
         * from where the last search stopped; one byte past the limit tells it is over */
        size_t room = lim->max_header_bytes + 1 - h->headlen;
        size_t take = evbuffer_get_length(in);
        if (take > room)
            take = room;
        if (h->headlen + take + 1 > h->headcap) {
            size_t cap = h->headcap ? h->headcap : 1024;
            while (cap < h->headlen + take + 1)
                cap *= 2;
            char *nb = realloc(h->headbuf, cap);
            if (!nb)
                abort();
            h->headbuf = nb;
            h->headcap = cap;
        }
        evbuffer_remove(in, h->headbuf + h->headlen, take);
        h->headlen += take;
        size_t hl = rd_http_head_len(h->headbuf, h->headlen, &c->scan);
        if (hl == 0 || hl > lim->max_header_bytes) {
            if (h->headlen > lim->max_header_bytes)
                refuse(c, RD_E_HEADERS_TOO_LARGE, "the request head is too large");
            return;
        }
        if (h->headlen > hl) { /* the body's (or the next request's) first bytes */
            evbuffer_prepend(in, h->headbuf + hl, h->headlen - hl);
            h->headlen = hl;
        }
        h->headbuf[hl] = '\0';
        int rc = take_head(c, in);
        if (rc < 0)
            return;
        if (rc == 1) {
            dispatch(c);
            return;
        }
    }
    if (c->state == CS_BODY) {
        if (h->head.chunked) {
            if (read_chunked(c, in) == 1)
                dispatch(c);
            return;
        }
        size_t need = (size_t)h->head.content_length;
        if (evbuffer_get_length(in) < need)
            return;
        h->body.len = 0;
        while (h->body.len < need) {
            struct evbuffer_iovec v;
            if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
                break;
            size_t k = v.iov_len < need - h->body.len ? v.iov_len : need - h->body.len;
            rd_sbuf_add(&h->body, v.iov_base, k);
            evbuffer_drain(in, k);
        }
        dispatch(c);
    }
}

/* ---- callbacks ------------------------------------------------------------------------- */

static void on_event(struct bufferevent *bev, short what, void *arg);

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct rd_hconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_iovec v;
    (void)what;
    if (evbuffer_reserve_space(in, READ_CHUNK, &v, 1) < 1)
        abort(); /* out of memory */
    ssize_t n = recv(fd, v.iov_base, v.iov_len, 0);
    v.iov_len = n > 0 ? (size_t)n : 0;
    evbuffer_commit_space(in, &v, 1);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        on_event(c->bev,
                 n == 0 ? BEV_EVENT_READING | BEV_EVENT_EOF : BEV_EVENT_READING | BEV_EVENT_ERROR,
                 c);
        return;
    }
    if (n < 0)
        return;
    if (evbuffer_get_length(in) >= c->s->in_max) {
        /* reading goes on while the application works (to see the client leave), but no
         * further than one request's worth: then it waits for handle_input to take it */
        event_del(c->rev);
        c->read_paused = 1;
    }
    handle_input(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    handle_input(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct rd_hconn *c = arg;
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) > 0)
        return;
    bufferevent_disable(bev, EV_WRITE); /* all out: the next answer is written at once */
    switch (c->state) {
    case CS_CLOSING:
        if (c->linger) {
            /* our side is done; what the client still sends is read and dropped, so that
             * closing does not reset the connection before it has read the answer */
            shutdown(bufferevent_getfd(bev), SHUT_WR);
            set_state(c, CS_LINGER);
            evbuffer_drain(bufferevent_get_input(bev),
                           evbuffer_get_length(bufferevent_get_input(bev)));
            return;
        }
        conn_free(c);
        return;
    case CS_STREAM:
        if (c->req.on_drained) {
            rd_hreq_drained_cb *cb = c->req.on_drained;
            c->req.on_drained = NULL;
            cb(c->req.drained_arg);
        }
        return;
    case CS_IDLE:
        if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
            handle_input(c); /* a pipelined request held back while answers were queued */
        return;
    default:
        return;
    }
}

/* The client closed, reset, or stopped reading (write timeout). */
static void client_gone(struct rd_hconn *c)
{
    atomic_fetch_add_explicit(&c->s->st->client_gone, 1, memory_order_relaxed);
    c->gone = 1;
    event_free(c->rev);
    bufferevent_free(c->bev);
    c->bev = NULL;
    c->rev = NULL;
    evtimer_del(c->timer);
    rd_hreq_gone_cb *cb = c->req.on_gone;
    c->req.on_gone = NULL;
    c->req.on_drained = NULL;
    if (cb)
        cb(&c->req, c->req.gone_arg); /* may answer, and so free c */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct rd_hconn *c = arg;
    (void)bev;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
        return;
    if (c->state == CS_APP || c->state == CS_STREAM) {
        client_gone(c); /* the application still holds the request: it answers into nothing */
        return;
    }
    conn_free(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct rd_hconn *c = arg;
    (void)fd;
    (void)what;
    switch (c->state) {
    case CS_HEAD:
    case CS_BODY:
        atomic_fetch_add_explicit(&c->s->st->timeouts, 1, memory_order_relaxed);
        refuse(c, RD_E_REQUEST_TIMEOUT, "the request did not arrive in time");
        return;
    case CS_IDLE:
    case CS_LINGER:
    case CS_CLOSING:
        conn_free(c);
        return;
    default:
        return;
    }
}

/* ---- connections ----------------------------------------------------------------------- */

static void conn_free(struct rd_hconn *c)
{
    struct rd_httpd *s = c->s;
    set_idle(c, 0);
    TAILQ_REMOVE(&s->all, c, link);
    if (c->rev)
        event_free(c->rev);
    if (c->bev)
        bufferevent_free(c->bev); /* closes the socket */
    event_free(c->timer);
    free(c->req.headbuf);
    rd_sbuf_free(&c->req.body);
    rd_sbuf_free(&c->req.outh);
    free(c);
    atomic_fetch_sub_explicit(&s->st->open, 1, memory_order_relaxed);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct rd_httpd *s = arg;
    (void)l;
    (void)salen;
    int open = atomic_load_explicit(&s->st->open, memory_order_relaxed);
    if (open >= s->lim.max_connections && !TAILQ_EMPTY(&s->idle)) {
        /* room for a client with something to ask: the longest idle keep-alive goes */
        conn_free(TAILQ_FIRST(&s->idle));
        atomic_fetch_add_explicit(&s->st->evicted_idle, 1, memory_order_relaxed);
        open--;
    }
    struct rd_hconn *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->s = s;
    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, on_readable, c);
    c->timer = evtimer_new(s->base, on_timer, c);
    if (!c->bev || !c->rev || !c->timer)
        abort();
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof(c->peer));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof(c->peer));
    c->req.c = c;
    rd_sbuf_init(&c->req.body);
    rd_sbuf_init(&c->req.outh);
    reset_request(&c->req);
    TAILQ_INSERT_TAIL(&s->all, c, link);
    atomic_fetch_add_explicit(&s->st->open, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->st->accepted, 1, memory_order_relaxed);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* on_read runs only when handle_input is triggered (deferred) for a pipelined request:
     * the bufferevent does not read (on_readable does) */
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_set_timeouts(c->bev, NULL, &s->tv_write);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE); /* EV_WRITE while output waits */
    /* a socket bufferevent keeps the end of its input frozen except while it reads itself */
    evbuffer_unfreeze(bufferevent_get_input(c->bev), 0);
    event_add(c->rev, NULL);
    if (open >= s->lim.max_connections) {
        atomic_fetch_add_explicit(&s->st->refused_full, 1, memory_order_relaxed);
        c->keep_alive = 0;
        refuse(c, RD_E_UNAVAILABLE, "too many connections; retry shortly");
        return;
    }
    set_state(c, CS_IDLE);
}

struct rd_httpd *rd_httpd_new(struct event_base *base, const struct rd_httpd_limits *lim,
                              struct rd_httpd_stats *st, rd_hreq_cb *on_request,
                              rd_hreq_refuse_cb *on_refuse, void *arg)
{
    struct rd_httpd *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->base = base;
    s->st = st;
    s->lim = *lim;
    s->on_request = on_request;
    s->on_refuse = on_refuse;
    s->arg = arg;
    TAILQ_INIT(&s->all);
    TAILQ_INIT(&s->idle);
    /* thousands of connections share three durations: libevent keeps each in a queue of
     * its own instead of the timer heap */
    struct timeval ti = {lim->idle_ms / 1000, (lim->idle_ms % 1000) * 1000};
    struct timeval tr = {lim->request_ms / 1000, (lim->request_ms % 1000) * 1000};
    struct timeval tl = {LINGER_MS / 1000, (LINGER_MS % 1000) * 1000};
    s->tv_idle = event_base_init_common_timeout(base, &ti);
    s->tv_request = event_base_init_common_timeout(base, &tr);
    s->tv_linger = event_base_init_common_timeout(base, &tl);
    /* reading goes on while the application works (to see the client leave), up to what
     * one request may hold */
    s->in_max = (size_t)lim->max_header_bytes + (size_t)lim->max_body_bytes + 65536;
    s->tv_write.tv_sec = lim->write_ms / 1000;
    s->tv_write.tv_usec = (lim->write_ms % 1000) * 1000;
    if (!s->tv_idle || !s->tv_request || !s->tv_linger) {
        free(s);
        return NULL;
    }
    return s;
}

void rd_httpd_serve(struct rd_httpd *s, struct evconnlistener *l)
{
    s->listener = l;
    evconnlistener_set_cb(l, on_accept, s);
}

void rd_httpd_drain(struct rd_httpd *s)
{
    s->draining = 1;
    if (s->listener) {
        evconnlistener_free(s->listener);
        s->listener = NULL;
    }
    while (!TAILQ_EMPTY(&s->idle))
        conn_free(TAILQ_FIRST(&s->idle));
}

void rd_httpd_free(struct rd_httpd *s)
{
    if (!s)
        return;
    if (s->listener)
        evconnlistener_free(s->listener);
    struct rd_hconn *c;
    while ((c = TAILQ_FIRST(&s->all))) {
        if (c->state == CS_APP || c->state == CS_STREAM)
            rd_warn("event=http_unanswered_at_exit path=\"%s\"", c->req.head.path);
        conn_free(c);
    }
    free(s);
}

/* ---- request accessors ------------------------------------------------------------------ */

const struct rd_http_head *rd_hreq_head(const struct rd_hreq *h)
{
    return &h->head;
}

const char *rd_hreq_header(const struct rd_hreq *h, const char *name)
{
    return rd_http_field(&h->head, name);
}

const char *rd_hreq_body(const struct rd_hreq *h, size_t *len)
{
    *len = h->body.len;
    return h->body.buf ? h->body.buf : "";
}

const char *rd_hreq_peer(const struct rd_hreq *h)
{
    return h->c->peer;
}

int rd_hreq_gone(const struct rd_hreq *h)
{
    return h->c->gone;
}

void rd_hreq_on_gone(struct rd_hreq *h, rd_hreq_gone_cb *cb, void *arg)
{
    h->on_gone = cb;
    h->gone_arg = arg;
}
