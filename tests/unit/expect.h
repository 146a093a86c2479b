/* The C unit tests' one assertion: counts, and names what failed. Each test
 * ends with printf("NAME: %d passed, %d failed\n", passed, failed). */
#ifndef LADLE_TEST_EXPECT_H
#define LADLE_TEST_EXPECT_H

#include <stdio.h>

static int passed, failed;

static void expect(int ok, const char *what)
{
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL: %s\n", what);
    }
}

#endif
