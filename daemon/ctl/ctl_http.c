/* SPDX-License-Identifier: MIT
 *
 * redeemctl's back-office commands (create, list, export, stats) are thin clients of the
 * daemon's HTTP API, so that the CLI and the API can never disagree: one blocking HTTP/1.0
 * request per call (HTTP/1.0, so a streamed export comes unchunked, ending at close).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl/ctl_http.h"

static int connect_to(const char *host, int port)
{
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, portstr, &hints, &res) != 0)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

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

int rd_ctl_http(const struct rd_ctl_target *t, const char *method, const char *path,
                const char *accept, const char *body, FILE *out, char **err_body)
{
    *err_body = NULL;
    int fd = connect_to(t->host, t->port);
    if (fd < 0) {
        fprintf(stderr, "redeemctl: cannot connect to redeemd at %s:%d\n", t->host, t->port);
        return -1;
    }
    char *req = NULL;
    size_t bl = body ? strlen(body) : 0;
    int n = asprintf(&req,
                     "%s %s HTTP/1.0\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, t->host, t->key, accept, bl, body ? body : "");
    if (n < 0 || write_all(fd, req, (size_t)n) < 0) {
        free(req);
        close(fd);
        return -1;
    }
    free(req);
    /* the head, then the body streamed to out (a success) or kept (an error) */
    char buf[65536];
    size_t have = 0;
    char *end = NULL;
    while (!end && have < sizeof(buf) - 1) {
        ssize_t k = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        have += (size_t)k;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n"); /* a head is far smaller than the buffer */
    }
    if (!end || strncmp(buf, "HTTP/1.", 7) != 0) {
        fprintf(stderr, "redeemctl: no HTTP answer from %s:%d\n", t->host, t->port);
        close(fd);
        return -1;
    }
    int status = atoi(buf + 9);
    size_t off = (size_t)(end + 4 - buf);
    FILE *sink = out;
    char *ebuf = NULL;
    size_t elen = 0;
    if (status >= 300 || !out)
        sink = open_memstream(&ebuf, &elen);
    fwrite(buf + off, 1, have - off, sink);
    for (;;) {
        ssize_t k = read(fd, buf, sizeof(buf));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        fwrite(buf, 1, (size_t)k, sink);
    }
    close(fd);
    if (sink != out) {
        fclose(sink);
        *err_body = ebuf;
    }
    return status;
}

void rd_ctl_print_error(int status, const char *body)
{
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    json_t *e = json_object_get(j, "error");
    if (e)
        fprintf(stderr, "redeemctl: %d %s: %s\n", status,
                json_string_value(json_object_get(e, "code")),
                json_string_value(json_object_get(e, "message")));
    else
        fprintf(stderr, "redeemctl: HTTP %d\n", status);
    json_decref(j);
}
