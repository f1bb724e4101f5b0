/* dpo.c: being written (a stub until its issue lands). */
#include <stdio.h>

#include "cmd.h"

int cmd_dpo(int argc, char **argv)
{
    (void)argc, (void)argv;
    fprintf(stderr, "llm: error: not implemented yet\n");
    return 1;
}
