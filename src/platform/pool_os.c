/* pool_os.c - see pool_os.h. */
#include <unistd.h>

#include "platform/platform.h"
#include "platform/pool_os.h"

int64_t mp__pool_spin_budget(int peer_cpu)
{
    static long online;
    long n = __atomic_load_n(&online, __ATOMIC_RELAXED);
    if (n == 0) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1) n = 1;
        __atomic_store_n(&online, n, __ATOMIC_RELAXED);
    }
    if (n < 2) return 0;
    int me = mp__current_cpu();
    if (peer_cpu >= 0 && me >= 0 && peer_cpu == me) return 0;
    return 50000; /* as mp__spin_budget: a bit more than waking a halted vCPU (~35 us) */
}
