#ifndef SYNCBRIDGE_CMARIADB_SHIM_H
#define SYNCBRIDGE_CMARIADB_SHIM_H
// Debian installs Connector/C's headers under <mariadb/>; pkg-config adds that folder.
#include <mysql.h>
#include <errmsg.h>

// Connector/C's functions that wait for the server (or the network), redeclared so that Swift
// warns wherever one is called from an async context: there it would block a thread of the
// cooperative pool. A call inside a synchronous closure — the one `withRawConnection` or a
// `BlockingPool` runs on a thread of its own — is not flagged. The accessors (mysql_errno,
// mysql_num_rows, mysql_stmt_bind_param…) and the non-blocking API (the `_start`/`_cont`
// functions) are left alone.
#define SB_MYSQL_BLOCKS                                                                            \
    __attribute__((swift_attr("@available(*, noasync, message: \"waits for the server and would block a thread of Swift's cooperative pool: call it inside withRawConnection { } or on a BlockingPool, or use SyncBridgeMariaDB's async API\")")))

MYSQL *STDCALL mysql_real_connect(MYSQL *mysql, const char *host, const char *user, const char *passwd,
                                  const char *db, unsigned int port, const char *unix_socket,
                                  unsigned long clientflag) SB_MYSQL_BLOCKS;
my_bool STDCALL mysql_change_user(MYSQL *mysql, const char *user, const char *passwd, const char *db) SB_MYSQL_BLOCKS;
int STDCALL mysql_select_db(MYSQL *mysql, const char *db) SB_MYSQL_BLOCKS;
int STDCALL mysql_query(MYSQL *mysql, const char *q) SB_MYSQL_BLOCKS;
int STDCALL mysql_real_query(MYSQL *mysql, const char *q, unsigned long length) SB_MYSQL_BLOCKS;
int STDCALL mysql_send_query(MYSQL *mysql, const char *q, unsigned long length) SB_MYSQL_BLOCKS;
my_bool STDCALL mysql_read_query_result(MYSQL *mysql) SB_MYSQL_BLOCKS;
MYSQL_RES *STDCALL mysql_store_result(MYSQL *mysql) SB_MYSQL_BLOCKS;
MYSQL_ROW STDCALL mysql_fetch_row(MYSQL_RES *result) SB_MYSQL_BLOCKS;
int STDCALL mysql_next_result(MYSQL *mysql) SB_MYSQL_BLOCKS;
int STDCALL mysql_ping(MYSQL *mysql) SB_MYSQL_BLOCKS;
int STDCALL mysql_kill(MYSQL *mysql, unsigned long pid) SB_MYSQL_BLOCKS;
my_bool STDCALL mysql_autocommit(MYSQL *mysql, my_bool mode) SB_MYSQL_BLOCKS;
my_bool STDCALL mysql_commit(MYSQL *mysql) SB_MYSQL_BLOCKS;
my_bool STDCALL mysql_rollback(MYSQL *mysql) SB_MYSQL_BLOCKS;
int STDCALL mysql_set_server_option(MYSQL *mysql, enum enum_mysql_set_option option) SB_MYSQL_BLOCKS;
int STDCALL mysql_reset_connection(MYSQL *mysql) SB_MYSQL_BLOCKS;
int STDCALL mysql_stmt_prepare(MYSQL_STMT *stmt, const char *query, unsigned long length) SB_MYSQL_BLOCKS;
int STDCALL mysql_stmt_execute(MYSQL_STMT *stmt) SB_MYSQL_BLOCKS;
int STDCALL mysql_stmt_fetch(MYSQL_STMT *stmt) SB_MYSQL_BLOCKS;
int STDCALL mysql_stmt_store_result(MYSQL_STMT *stmt) SB_MYSQL_BLOCKS;
my_bool STDCALL mysql_stmt_close(MYSQL_STMT *stmt) SB_MYSQL_BLOCKS;
my_bool STDCALL mysql_stmt_reset(MYSQL_STMT *stmt) SB_MYSQL_BLOCKS;
my_bool STDCALL mysql_stmt_send_long_data(MYSQL_STMT *stmt, unsigned int param_number, const char *data,
                                          unsigned long length) SB_MYSQL_BLOCKS;
int STDCALL mysql_stmt_next_result(MYSQL_STMT *stmt) SB_MYSQL_BLOCKS;
int STDCALL mariadb_stmt_execute_direct(MYSQL_STMT *stmt, const char *stmt_str, size_t length) SB_MYSQL_BLOCKS;

#undef SB_MYSQL_BLOCKS
#endif
