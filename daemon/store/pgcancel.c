/* SPDX-License-Identifier: MIT
 *
 * The cancel thread (see pgcancel.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store/pgcancel.h"
#include "rd/log.h"

#define QUEUE_MAX 1024

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int started, stop;
    PGcancel *q[QUEUE_MAX];
    int head, n;
    atomic_ullong sent, dropped;
} C = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *cancel_main(void *arg)
{
    (void)arg;
    rd_log_set_thread_name("pgcancel");
    pthread_mutex_lock(&C.mu);
    for (;;) {
        while (C.n == 0 && !C.stop)
            pthread_cond_wait(&C.cv, &C.mu);
        if (C.n == 0)
            break;
        PGcancel *c = C.q[C.head];
        C.head = (C.head + 1) % QUEUE_MAX;
        C.n--;
        pthread_mutex_unlock(&C.mu);
        char err[256] = "";
        if (!PQcancel(c, err, sizeof(err))) {
            err[strcspn(err, "\n")] = '\0';
            rd_warn("event=pg_cancel_failed err=\"%s\"", err);
        } else {
            atomic_fetch_add_explicit(&C.sent, 1, memory_order_relaxed);
        }
        PQfreeCancel(c);
        pthread_mutex_lock(&C.mu);
    }
    pthread_mutex_unlock(&C.mu);
    return NULL;
}

int rd_pgcancel_start(void)
{
    if (pthread_create(&C.thread, NULL, cancel_main, NULL) != 0)
        return -1;
    C.started = 1;
    return 0;
}

void rd_pgcancel_stop(void)
{
    if (!C.started)
        return;
    pthread_mutex_lock(&C.mu);
    C.stop = 1;
    pthread_cond_signal(&C.cv);
    pthread_mutex_unlock(&C.mu);
    pthread_join(C.thread, NULL);
    C.started = 0;
}

void rd_pgcancel_submit(PGcancel *cancel)
{
    if (!cancel)
        return;
    pthread_mutex_lock(&C.mu);
    if (!C.started || C.stop || C.n == QUEUE_MAX) {
        pthread_mutex_unlock(&C.mu);
        atomic_fetch_add_explicit(&C.dropped, 1, memory_order_relaxed);
        PQfreeCancel(cancel);
        return;
    }
    C.q[(C.head + C.n) % QUEUE_MAX] = cancel;
    C.n++;
    pthread_cond_signal(&C.cv);
    pthread_mutex_unlock(&C.mu);
}

void rd_pgcancel_counts(unsigned long long *sent, unsigned long long *dropped)
{
    *sent = atomic_load_explicit(&C.sent, memory_order_relaxed);
    *dropped = atomic_load_explicit(&C.dropped, memory_order_relaxed);
}
