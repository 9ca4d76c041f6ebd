/*
 * cow_file_deleted: cow_file with the file unlinked once mapped (see there).
 */
#define COW_FILE_DELETED 1
#include "cow_file.c"
