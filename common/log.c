/* SPDX-License-Identifier: MIT
 *
 * Line logger. Each line is formatted into a stack buffer and written with one write(2), so
 * lines from different threads never interleave.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "rd/log.h"

int rd_log_level_current = RD_LOG_INFO;
static _Thread_local const char *thread_name = "main";
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int rd_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void rd_log_set_level(int level)
{
    rd_log_level_current = level;
}

void rd_log_set_thread_name(const char *name)
{
    thread_name = name;
    /* the same name in top -H, perf and /proc/<pid>/task/<tid>/comm */
    char comm[16];
    snprintf(comm, sizeof(comm), "rd-%s", name);
    pthread_setname_np(pthread_self(), comm);
}

void rd_log_vwrite(int level, const char *fmt, va_list ap)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s thread=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000),
                     level_names[level < 0   ? 0
                                 : level > 3 ? 3
                                             : level],
                     thread_name);
    if (n < 0)
        return;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    /* A message must stay one line whatever it quotes. */
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void rd_log_write(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rd_log_vwrite(level, fmt, ap);
    va_end(ap);
}
