/* SPDX-License-Identifier: MIT
 *
 * Ledger retention. The ledger is partitioned by month of the event's time (002), so
 * forgetting a month is DETACH + DROP of one table: no row-by-row DELETE, no bloat, no
 * vacuum debt. DETACH ... CONCURRENTLY keeps the shipper inserting meanwhile; it cannot run
 * in a transaction block, so each step is its own statement, and a run interrupted between
 * them leaves a partition "detach pending", which the next run finalises. What the back
 * office reads (per-coupon usage, hourly rollups, stats) lives in the summaries, which keep
 * their figures for the dropped months.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/retention.h"
#include "rd/rdtime.h"

/* Partitions with their upper bound (ms) and whether a detach is pending, oldest first; a
 * pending detach first, since PostgreSQL refuses another detach while one is pending. */
#define PARTS_SQL                                                                                  \
    "SELECT c.relname, i.inhdetachpending, (extract(epoch FROM substring("                         \
    "pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')::timestamptz) * 1000)"       \
    "::bigint AS upper FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "                  \
    "WHERE i.inhparent = 'transactions'::regclass ORDER BY i.inhdetachpending DESC, upper, "       \
    "c.relname"

static int run(PGconn *pg, const char *sql)
{
    PGresult *res = PQexec(pg, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "redeemctl: %s: %s", sql, PQerrorMessage(pg));
    PQclear(res);
    return ok ? 0 : -1;
}

static int drop_one(PGconn *pg, const char *name, int pending, int64_t upper)
{
    char *id = PQescapeIdentifier(pg, name, strlen(name));
    if (!id)
        return -1;
    char sql[512], upper_s[RD_TIME_BUFSZ], rows_s[32] = "0";
    rd_time_format(upper, upper_s);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", id);
    PGresult *res = PQexec(pg, sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        snprintf(rows_s, sizeof(rows_s), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    int rc = 0;
    snprintf(sql, sizeof(sql), "ALTER TABLE transactions DETACH PARTITION %s %s", id,
             pending ? "FINALIZE" : "CONCURRENTLY");
    if (run(pg, sql) < 0)
        rc = -1;
    snprintf(sql, sizeof(sql), "DROP TABLE %s", id);
    if (rc == 0 && run(pg, sql) < 0)
        rc = -1;
    PQfreemem(id);
    if (rc < 0)
        return -1;
    /* the page bounds of transactions whose rows were all in this or older (dropped) months */
    const char *up[1] = {upper_s};
    res = PQexecParams(pg, "DELETE FROM ledger_batches WHERE max_ts < $1::timestamptz", 1, NULL, up,
                       NULL, NULL, 0);
    PQclear(res);
    /* the fraud team's trace of what left the ledger, and when */
    const char *p[3] = {name, upper_s, rows_s};
    res = PQexecParams(pg,
                       "INSERT INTO audit_log (txn_id, ts, action, after) VALUES ('retention_' "
                       "|| $1 || '_' || (extract(epoch FROM now()) * 1000)::bigint, now(), "
                       "'ledger_retention', jsonb_build_object('partition', $1::text, "
                       "'up_to', $2::text, 'rows', $3::bigint))",
                       3, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fprintf(stderr, "redeemctl: %s dropped, but not recorded in audit_log: %s", name,
                PQerrorMessage(pg));
    PQclear(res);
    printf("dropped %s: %s rows before %s\n", name, rows_s, upper_s);
    return 0;
}

int rd_retention(PGconn *pg, int64_t cutoff_ms, int dry)
{
    PGresult *res = PQexec(pg, PARTS_SQL);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "redeemctl: cannot list the ledger's partitions: %s", PQerrorMessage(pg));
        PQclear(res);
        return 2;
    }
    char cut[RD_TIME_BUFSZ];
    rd_time_format(cutoff_ms, cut);
    int n = 0, failed = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        if (PQgetisnull(res, i, 2))
            continue; /* not a monthly range partition of ours: left alone */
        int64_t upper = strtoll(PQgetvalue(res, i, 2), NULL, 10);
        if (upper > cutoff_ms)
            continue;
        const char *name = PQgetvalue(res, i, 0);
        if (dry) {
            n++;
            char upper_s[RD_TIME_BUFSZ];
            printf("would drop %s: rows before %s\n", name, rd_time_format(upper, upper_s));
        } else if (drop_one(pg, name, PQgetvalue(res, i, 1)[0] == 't', upper) < 0) {
            failed = 1;
            break;
        } else {
            n++;
        }
    }
    PQclear(res);
    fprintf(stderr, "%d partition%s %s (keeping rows from %s)\n", n, n == 1 ? "" : "s",
            dry ? "to drop" : "dropped", cut);
    return failed ? 2 : 0;
}
