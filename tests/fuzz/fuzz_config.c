/* SPDX-License-Identifier: MIT
 *
 * The config file parser: whatever a file holds, it is taken whole or refused with a message
 * naming the line, and what is taken passes the same validation as at start.
 */
#include "fuzz.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "rd/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct rd_config cfg;
    rd_config_defaults(&cfg);
    FILE *f = fmemopen((void *)data, size, "r");
    if (!f)
        return 0;
    char err[1400] = "";
    if (rd_config_load_stream(&cfg, f, "fuzz.conf", err, sizeof(err)) < 0)
        CHECK(strstr(err, "fuzz.conf:") != NULL);
    else
        (void)rd_config_validate(&cfg, err, sizeof(err));
    fclose(f);
    return 0;
}
