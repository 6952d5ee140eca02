#ifndef SYNCBRIDGE_CLIBPQ_SHIM_H
#define SYNCBRIDGE_CLIBPQ_SHIM_H
// Debian installs libpq's headers under <postgresql/>; pkg-config adds that folder.
#include <libpq-fe.h>
#endif
