/* SPDX-License-Identifier: MIT
 *
 * Pipelines on blocking hiredis connections, always read to their end.
 */
#include <string.h>

#include "store/redis_sync.h"

int rd_rsync_read(redisContext *c, int n, redisReply **out)
{
    for (int i = 0; i < n; i++) {
        void *rep = NULL;
        if (redisGetReply(c, &rep) != REDIS_OK || !rep) {
            rd_rsync_free(out, i);
            for (int k = i; k < n; k++)
                out[k] = NULL;
            return -1;
        }
        out[i] = rep;
    }
    return 0;
}

void rd_rsync_free(redisReply **out, int n)
{
    for (int i = 0; i < n; i++) {
        if (out[i])
            freeReplyObject(out[i]);
        out[i] = NULL;
    }
}

int rd_rsync_is_err(const redisReply *r, const char *prefix)
{
    return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, prefix, strlen(prefix)) == 0;
}

redisReply *rd_rsync_call(redisContext *c, const struct rd_cmd *cmd, const char **why)
{
    *why = NULL;
    if (rd_cmd_check(cmd, why) < 0)
        return NULL;
    return redisCommandArgv(c, cmd->argc, (const char **)cmd->argv, cmd->lens);
}

int rd_rsync_append(redisContext *c, const struct rd_cmd *cmd, const char **why)
{
    *why = NULL;
    if (rd_cmd_check(cmd, why) < 0)
        return -1;
    return redisAppendCommandArgv(c, cmd->argc, (const char **)cmd->argv, cmd->lens) == REDIS_OK
               ? 0
               : -1;
}
