/* SPDX-License-Identifier: MIT
 *
 * The HTTP/1.1 server core of one worker, on libevent bufferevents: it accepts connections,
 * reads each request with bounded sizes and an absolute deadline, hands the complete request
 * to the application (one at a time per connection, pipelined ones in order), writes the
 * answer, whole or streamed in chunks with back-pressure, and keeps the connection or
 * closes it. It knows bytes and HTTP framing, not routes, keys or JSON.
 *
 * Every refusal the core makes itself (a malformed request, a head or body too large, a
 * request not received in time, too many connections) goes to the application's refuse
 * callback, which answers it like any other request: the client always gets the one JSON
 * envelope, never a library's HTML page. The connection closes after a refusal, lingering
 * long enough for the client to read it.
 *
 * Owns: the listener, every connection (socket, its read event, the bufferevent that holds
 * input and output, write event and write timeout, deadline timer, buffers) and the
 * struct rd_hreq each connection carries. The application borrows a request from the
 * request (or refuse) callback until it answers it exactly once, with rd_hreq_reply,
 * rd_hreq_stream_end or rd_hreq_abort, also after the client has gone: a gone client's
 * request is kept, its socket closed, until then. Callbacks never run from inside an
 * rd_hreq_* call.
 * Thread: the worker's (the one running base).
 */
#ifndef RD_HTTPD_H
#define RD_HTTPD_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdatomic.h>
#include <stddef.h>

#include "rd/http_parse.h"
#include "rd/status.h"

struct rd_httpd;
struct rd_hreq;

struct rd_httpd_limits {
    size_t max_header_bytes; /* request line and fields; larger is 431 */
    size_t max_body_bytes;   /* larger is 413 (a declared length is refused before reading) */
    int idle_ms;             /* a keep-alive connection with no request starting is closed */
    int request_ms;          /* from a request's first byte to its last; later is 408 */
    int write_ms;            /* an answer the client does not read for this long is cut */
    int max_connections;     /* open at once; past it the oldest idle one is closed, or 503 */
};

/** A complete request: answer it (now or later) exactly once. */
typedef void rd_hreq_cb(struct rd_hreq *h, void *arg);
/** A refusal st (msg: static text) the core made: answer it with rd_hreq_reply. */
typedef void rd_hreq_refuse_cb(struct rd_hreq *h, enum rd_status st, const char *msg, void *arg);
/** The client of a request the application holds has gone (see rd_hreq_on_gone). */
typedef void rd_hreq_gone_cb(struct rd_hreq *h, void *arg);
/** A streamed chunk has been taken by the socket: send the next one. */
typedef void rd_hreq_drained_cb(void *arg);

/** Connection counters, read by /metrics on any thread. */
struct rd_httpd_stats {
    atomic_int open;
    atomic_ullong accepted, refused_full, evicted_idle, timeouts, client_gone;
};

/** st (borrowed, kept by the caller beyond rd_httpd_free) receives the counters. */
struct rd_httpd *rd_httpd_new(struct event_base *base, const struct rd_httpd_limits *lim,
                              struct rd_httpd_stats *st, rd_hreq_cb *on_request,
                              rd_hreq_refuse_cb *on_refuse, void *arg);
/** Serves the connections l accepts (l is taken over: freed with the server). */
void rd_httpd_serve(struct rd_httpd *s, struct evconnlistener *l);
/**
 * Stops accepting and closes idle connections; from now on every answer closes its
 * connection (Connection: close). Requests in flight are still answered.
 */
void rd_httpd_drain(struct rd_httpd *s);
/** Closes every connection and frees s. No request may be held by the application. */
void rd_httpd_free(struct rd_httpd *s);

/* ---- a request ------------------------------------------------------------------------- */

/** Method, path, query and fields (valid until the request is answered). */
const struct rd_http_head *rd_hreq_head(const struct rd_hreq *h);
/** A field's value (case-insensitive name), or NULL. */
const char *rd_hreq_header(const struct rd_hreq *h, const char *name);
/** The body (decoded when chunked; NUL-terminated); *len its length. */
const char *rd_hreq_body(const struct rd_hreq *h, size_t *len);
/** The peer's address as text. */
const char *rd_hreq_peer(const struct rd_hreq *h);
/** 1 once the client has gone: an answer will go nowhere (but must still be given). */
int rd_hreq_gone(const struct rd_hreq *h);
/** cb runs (once) if the client goes away before h is answered. */
void rd_hreq_on_gone(struct rd_hreq *h, rd_hreq_gone_cb *cb, void *arg);

/** Adds a response header (copied). */
void rd_hreq_add_header(struct rd_hreq *h, const char *name, const char *value);
/** Answers with status and body (copied); h is done with. */
void rd_hreq_reply(struct rd_hreq *h, int status, const char *body, size_t len);
/** Starts a streamed answer (chunked; to an HTTP/1.0 client, ended by closing). */
void rd_hreq_stream_start(struct rd_hreq *h, int status);
/**
 * Sends data (drained from it) as one chunk; drained(arg) runs once the socket has taken
 * everything queued so far. Returns 0, or -1 if the client has gone (nothing is sent and
 * drained will not run).
 */
int rd_hreq_stream_chunk(struct rd_hreq *h, struct evbuffer *data, rd_hreq_drained_cb *drained,
                         void *arg);
/** Ends a streamed answer; h is done with. */
void rd_hreq_stream_end(struct rd_hreq *h);
/** Cuts the connection (a stream visibly truncated); h is done with. */
void rd_hreq_abort(struct rd_hreq *h);

#endif
