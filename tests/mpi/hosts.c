/* SPDX-License-Identifier: MIT */
/* hosts.c - where did each rank run, and which ranks talk to each other over TCP? (issue 13)
 *
 * Every rank exchanges a message with every other rank (so the BTLs open their connections), then
 * rank 0 gathers each rank's hostname and the TCP connections the rank itself holds, and prints
 *     rank R host NAME
 *     tcp A B          (ranks A < B hold the two ends of one established TCP connection)
 * tests/mpi/hosts.sh runs it across two simulated hosts (scripts/mpi-rsh-agent.sh) and checks that
 * both hostnames appear and that exactly the ranks on different hosts are joined by TCP.
 *
 * A connection is recognised by its two ports: rank A's socket has local port p, remote port q and
 * rank B's has local q, remote p, both on 127.0.0.1. Sockets to the rank's own Open MPI daemon
 * (PMIx and out-of-band traffic also run over TCP on lo) never pair two ranks, so they do not
 * count. Sockets are found through /proc/self/fd and /proc/net/tcp (the inode of each). */
#include <mpi.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_CONN = 64, HOST_LEN = 64 };

struct rank_info {
    char host[HOST_LEN];
    int nconn;
    unsigned short lport[MAX_CONN], rport[MAX_CONN];
};

static int is_own_socket(unsigned long inode)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    char want[64], path[300], link[64];
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n > 0) {
            link[n] = 0;
            found = !strcmp(link, want);
        }
    }
    closedir(d);
    return found;
}

/* This process's established IPv4 TCP connections from 127.0.0.1 to 127.0.0.1. */
static void own_tcp(struct rank_info *ri)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f) return;
    char line[512];
    if (!fgets(line, sizeof line, f)) { /* header */
        fclose(f);
        return;
    }
    while (fgets(line, sizeof line, f) && ri->nconn < MAX_CONN) {
        unsigned laddr, lport, raddr, rport, state;
        unsigned long inode;
        /*  sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout
         *  inode */
        if (sscanf(line, " %*d: %x:%x %x:%x %x %*x:%*x %*x:%*x %*x %*u %*u %lu", &laddr, &lport,
                   &raddr, &rport, &state, &inode) != 6)
            continue;
        /* 0x0100007F is 127.0.0.1 as the kernel prints it; state 1 is ESTABLISHED */
        if (state != 1 || laddr != 0x0100007Fu || raddr != 0x0100007Fu) continue;
        if (!is_own_socket(inode)) continue;
        ri->lport[ri->nconn] = (unsigned short)lport;
        ri->rport[ri->nconn] = (unsigned short)rport;
        ri->nconn++;
    }
    fclose(f);
}

static int joined(const struct rank_info *a, const struct rank_info *b)
{
    for (int i = 0; i < a->nconn; i++)
        for (int j = 0; j < b->nconn; j++)
            if (a->lport[i] == b->rport[j] && a->rport[i] == b->lport[j]) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    /* One message each way between every pair, so every pair has opened its connection. */
    for (int peer = 0; peer < size; peer++) {
        if (peer == rank) continue;
        int out = rank, in = -1;
        MPI_Sendrecv(&out, 1, MPI_INT, peer, 7, &in, 1, MPI_INT, peer, 7, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
        if (in != peer) {
            fprintf(stderr, "hosts: rank %d got %d from rank %d\n", rank, in, peer);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }

    struct rank_info me;
    memset(&me, 0, sizeof me);
    gethostname(me.host, sizeof me.host - 1);
    own_tcp(&me);

    struct rank_info *all = NULL;
    if (rank == 0) {
        all = calloc((size_t)size, sizeof *all);
        if (!all) MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Gather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, 0, MPI_COMM_WORLD);

    if (rank == 0) {
        for (int r = 0; r < size; r++)
            printf("rank %d host %s\n", r, all[r].host);
        for (int a = 0; a < size; a++)
            for (int b = a + 1; b < size; b++)
                if (joined(&all[a], &all[b])) printf("tcp %d %d\n", a, b);
        fflush(stdout);
        free(all);
    }
    MPI_Finalize();
    return 0;
}
