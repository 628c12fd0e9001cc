/* SPDX-License-Identifier: MIT
 * cmocka includes in the order cmocka 1.1 requires. */
#ifndef RD_TEST_UTIL_H
#define RD_TEST_UTIL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#endif
