/* Error values: a message with its context, built up as it travels up. */
#include "ladle.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int lad_fail(lad_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->usage = false;
    return -1;
}

int lad_usage(lad_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->usage = true;
    return -1;
}

int lad_fail_prefix(lad_error *err, const char *fmt, ...)
{
    char prefix[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t np = strlen(prefix), cap = sizeof err->msg;
    if (np >= cap)
        np = cap - 1;
    size_t keep = strnlen(err->msg, cap - 1);
    if (np + keep >= cap)
        keep = cap - 1 - np; /* the tail of a very long message is cut */
    memmove(err->msg + np, err->msg, keep);
    memcpy(err->msg, prefix, np);
    err->msg[np + keep] = 0;
    return -1;
}
