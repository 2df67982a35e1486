/* Versioned schema migrations of the metrics database. */
#ifndef CL_MIGRATE_H
#define CL_MIGRATE_H

#include <libpq-fe.h>

/*
 * Applies every migration newer than the database's version, each in its
 * own transaction, under an advisory lock so that collectors starting
 * together apply each one once. Returns 0 or AM_EDB (logged).
 */
int cl_migrate(PGconn *conn);

/* The newest schema version this build knows. */
int cl_migrate_latest(void);

#endif
