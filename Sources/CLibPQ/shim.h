#ifndef SYNCBRIDGE_CLIBPQ_SHIM_H
#define SYNCBRIDGE_CLIBPQ_SHIM_H
// Debian installs libpq's headers under <postgresql/>; pkg-config adds that folder.
#include <libpq-fe.h>

// libpq's functions that wait for the server (or the network), redeclared so that Swift warns
// wherever one is called from an async context: there it would block a thread of the
// cooperative pool. A call inside a synchronous closure — the one `withRawConnection` or a
// `BlockingPool` runs on a thread of its own — is not flagged. The pure accessors (PQstatus,
// PQgetvalue, PQntuples…) and the non-blocking API (PQsendQuery…, PQconsumeInput, PQisBusy)
// are left alone.
#define SB_PQ_BLOCKS                                                                               \
    __attribute__((swift_attr("@available(*, noasync, message: \"waits for the server and would block a thread of Swift's cooperative pool: call it inside withRawConnection { } or on a BlockingPool, or use SyncBridgePostgres' async API\")")))

PGconn *PQconnectdb(const char *conninfo) SB_PQ_BLOCKS;
PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values, int expand_dbname) SB_PQ_BLOCKS;
PGconn *PQsetdbLogin(const char *pghost, const char *pgport, const char *pgoptions, const char *pgtty,
                     const char *dbName, const char *login, const char *pwd) SB_PQ_BLOCKS;
void PQreset(PGconn *conn) SB_PQ_BLOCKS;
PGPing PQping(const char *conninfo) SB_PQ_BLOCKS;
PGPing PQpingParams(const char *const *keywords, const char *const *values, int expand_dbname) SB_PQ_BLOCKS;
PGresult *PQexec(PGconn *conn, const char *query) SB_PQ_BLOCKS;
PGresult *PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                       const char *const *paramValues, const int *paramLengths, const int *paramFormats,
                       int resultFormat) SB_PQ_BLOCKS;
PGresult *PQprepare(PGconn *conn, const char *stmtName, const char *query, int nParams,
                    const Oid *paramTypes) SB_PQ_BLOCKS;
PGresult *PQexecPrepared(PGconn *conn, const char *stmtName, int nParams, const char *const *paramValues,
                         const int *paramLengths, const int *paramFormats, int resultFormat) SB_PQ_BLOCKS;
PGresult *PQdescribePrepared(PGconn *conn, const char *stmt) SB_PQ_BLOCKS;
PGresult *PQdescribePortal(PGconn *conn, const char *portal) SB_PQ_BLOCKS;
PGresult *PQgetResult(PGconn *conn) SB_PQ_BLOCKS;
int PQcancel(PGcancel *cancel, char *errbuf, int errbufsize) SB_PQ_BLOCKS;
int PQrequestCancel(PGconn *conn) SB_PQ_BLOCKS;
int PQputCopyData(PGconn *conn, const char *buffer, int nbytes) SB_PQ_BLOCKS;
int PQputCopyEnd(PGconn *conn, const char *errormsg) SB_PQ_BLOCKS;
int PQgetCopyData(PGconn *conn, char **buffer, int async) SB_PQ_BLOCKS;
int PQflush(PGconn *conn) SB_PQ_BLOCKS;
char *PQencryptPasswordConn(PGconn *conn, const char *passwd, const char *user, const char *algorithm) SB_PQ_BLOCKS;

#undef SB_PQ_BLOCKS
#endif
