/* scaling.c: being written (a stub until its issue lands). */
#include <stdio.h>

#include "cmd.h"

int cmd_scaling_fit(int argc, char **argv)
{
    (void)argc, (void)argv;
    fprintf(stderr, "llm: error: not implemented yet\n");
    return 1;
}

int cmd_scaling_sweep(int argc, char **argv)
{
    (void)argc, (void)argv;
    fprintf(stderr, "llm: error: not implemented yet\n");
    return 1;
}
