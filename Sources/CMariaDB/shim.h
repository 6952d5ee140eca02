#ifndef SYNCBRIDGE_CMARIADB_SHIM_H
#define SYNCBRIDGE_CMARIADB_SHIM_H
// Debian installs Connector/C's headers under <mariadb/>; pkg-config adds that folder.
#include <mysql.h>
#include <errmsg.h>
#endif
