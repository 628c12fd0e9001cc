/* SPDX-License-Identifier: MIT
 *
 * One-line structured logging to stderr: "ts level worker=N key=value ...". The level check
 * happens before any formatting, so debug lines cost one branch when disabled. Safe to call
 * from any thread (each line is one write(2)); never call it from a signal handler.
 */
#ifndef RD_LOG_H
#define RD_LOG_H

#include <stdarg.h>

enum rd_log_level { RD_LOG_DEBUG = 0, RD_LOG_INFO = 1, RD_LOG_WARN = 2, RD_LOG_ERROR = 3 };

extern int rd_log_level_current;

/** Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int rd_log_level_parse(const char *name);
void rd_log_set_level(int level);
/** Names this thread in every line it logs ("main", "w0", ...). The string is borrowed. */
void rd_log_set_thread_name(const char *name);

void rd_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rd_log_vwrite(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define rd_log(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= rd_log_level_current)                                                       \
            rd_log_write((level), __VA_ARGS__);                                                    \
    } while (0)

#define rd_debug(...) rd_log(RD_LOG_DEBUG, __VA_ARGS__)
#define rd_info(...)  rd_log(RD_LOG_INFO, __VA_ARGS__)
#define rd_warn(...)  rd_log(RD_LOG_WARN, __VA_ARGS__)
#define rd_error(...) rd_log(RD_LOG_ERROR, __VA_ARGS__)

#endif
