/* Where do MPI ranks run, and does their traffic cross their interface?
 *
 * Ranks 0 and 1 swap BYTES (default 10 MiB) each way. Every rank prints its
 * host name, its network namespace (/proc/self/ns/net) and how much its
 * eth0 received and sent meanwhile (/sys/class/net/eth0/statistics, read
 * between barriers, so the exchange is complete on both sides):
 *
 *   rank=0 size=2 host=c-0 netns=net:[4026532822] bytes=10485760 rx=10503564 tx=10500066
 *
 * Build with either MPI:  mpicc.openmpi -O2 -o ring.openmpi ring.c
 *                         mpicc.mpich   -O2 -o ring.mpich   ring.c
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static long long counter(const char *what)
{
    char path[128];
    long long v = -1;
    FILE *f;
    snprintf(path, sizeof path, "/sys/class/net/eth0/statistics/%s", what);
    if ((f = fopen(path, "r"))) {
        if (fscanf(f, "%lld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

int main(int argc, char **argv)
{
    int rank, size, n;
    char ns[64] = "?", host[64] = "?";
    MPI_Init(&argc, &argv);
    n = argc > 1 ? atoi(argv[1]) : 10 << 20;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    ssize_t len = readlink("/proc/self/ns/net", ns, sizeof ns - 1);
    if (len > 0)
        ns[len] = 0;
    gethostname(host, sizeof host);
    char *buf = calloc(n, 1);

    MPI_Barrier(MPI_COMM_WORLD);
    long long rx0 = counter("rx_bytes"), tx0 = counter("tx_bytes");
    if (rank == 0) {
        MPI_Send(buf, n, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
        MPI_Recv(buf, n, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else if (rank == 1) {
        MPI_Recv(buf, n, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(buf, n, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
    }
    /* MPI_Send may return with data still in the socket buffer: count after
     * the peer has it all. */
    MPI_Barrier(MPI_COMM_WORLD);
    long long rx1 = counter("rx_bytes"), tx1 = counter("tx_bytes");

    printf("rank=%d size=%d host=%s netns=%s bytes=%d rx=%lld tx=%lld\n",
           rank, size, host, ns, n, rx1 - rx0, tx1 - tx0);
    free(buf);
    MPI_Finalize();
    return 0;
}
