/* SPDX-License-Identifier: MIT
 *
 * The PostgreSQL reachability probe behind /readyz: a thread of its own that keeps one
 * connection and runs "SELECT 1" every pg_probe_interval_ms. It blocks only itself, never a
 * worker. Workers read the result through rd_pgprobe_ok().
 */
#ifndef RD_PGPROBE_H
#define RD_PGPROBE_H

#include "rd/config.h"

int rd_pgprobe_start(const struct rd_config *cfg);
void rd_pgprobe_stop(void);
/** 1 if the last probe succeeded. Any thread. */
int rd_pgprobe_ok(void);

#endif
