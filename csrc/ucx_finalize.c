/* pyctr-ucx-finalize.so: keeps UCX answering its peers while MPICH's
 * MPI_Finalize waits in its PMI barrier. Loaded with LD_PRELOAD into MPICH
 * ranks (pyctr.mpi.env); it changes nothing else.
 *
 * The defect (MPICH 4.0.x, ch4:ucx; fixed upstream in 4.2 by removing the
 * barrier): MPIDI_UCX_mpi_finalize_hook calls ucp_disconnect_nb on every
 * endpoint, calls ucp_worker_progress until its own requests complete, then
 * blocks in the PMI barrier (a read on the PMI socket) and only afterwards
 * calls ucp_worker_destroy. Over UCX's TCP transport a disconnect flushes:
 * it sends the peer a PUT request and completes when the peer's UCX answers
 * it. If rank A's flush completes and A enters the barrier before rank B's
 * request reaches A, nobody reads that request: B spins in its progress loop,
 * A waits in the barrier for B, and the job never ends.
 *
 * The fix: from the first ucp_disconnect_nb until ucp_worker_destroy, a
 * thread of this library progresses the process's workers (once a
 * millisecond), so the request is answered while the main thread waits in
 * the barrier. Why that is safe:
 * - MPICH creates its workers UCS_THREAD_MODE_SERIALIZED: any thread may call
 *   UCX as long as calls do not overlap. In that window every UCX call the
 *   main thread makes (MPICH 4.0 makes only ucp_disconnect_nb,
 *   ucp_worker_progress, ucp_request_is_completed, ucp_request_release, and
 *   ucp_worker_destroy) goes through a wrapper below that holds the same
 *   lock as the thread. The lock is recursive, since UCX calls back into
 *   MPICH from progress and MPICH may then call UCX again.
 * - Progress is what MPICH's own loop does a moment earlier; the thread only
 *   keeps doing it during the barrier, as MPICH 4.2 in effect does by not
 *   blocking there.
 * - The thread stops (joined) before the first worker is destroyed. By then
 *   every rank has passed the barrier, so every rank's disconnects have
 *   completed and no peer waits for an answer any more.
 * Outside that window the wrappers only pass calls through. Only the
 * ucp_disconnect_nb of an MPICH before 4.2 starts the thread: other programs,
 * with or without UCX, are not changed (so the library may be in an image's
 * /etc/ld.so.preload). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* UCX's handles are opaque pointers and its status a C enum (int); declaring
 * them here keeps the build free of UCX's headers. */
typedef void *ucp_handle;
typedef int ucs_status_t;

#define MAX_WORKERS 64

static pthread_mutex_t lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static ucp_handle workers[MAX_WORKERS];
static int nworkers;
static pthread_t helper;
static int helper_running;     /* written only by the finalizing thread, around
                                 * pthread_create and pthread_join */
static atomic_int helper_stop;

static void *real(const char *name)
{
    void *fn = dlsym(RTLD_NEXT, name);
    if (fn == NULL) {
        fprintf(stderr, "pyctr-ucx-finalize: %s not found in UCX\n", name);
        abort();
    }
    return fn;
}

#define REAL(name, type) \
    static __typeof__(type) fn; \
    if (fn == NULL) \
        fn = (type)real(name)

static unsigned (*progress_fn)(ucp_handle);

static void *progress_loop(void *unused)
{
    const struct timespec pause = {0, 1000000};
    (void)unused;
    while (!atomic_load(&helper_stop)) {
        pthread_mutex_lock(&lock);
        for (int i = 0; i < nworkers; i++)
            progress_fn(workers[i]);
        pthread_mutex_unlock(&lock);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void stop_helper(void)
{
    if (!helper_running)
        return;
    atomic_store(&helper_stop, 1);
    pthread_join(helper, NULL);
    helper_running = 0;
}

static void start_helper(void)
{
    sigset_t all, old;
    if (progress_fn == NULL)
        progress_fn = (unsigned (*)(ucp_handle))real("ucp_worker_progress");
    atomic_store(&helper_stop, 0);
    /* Signals stay with the application's threads. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    helper_running = 1;    /* before the thread exists, so it sees 1 too */
    if (pthread_create(&helper, NULL, progress_loop, NULL) != 0)
        helper_running = 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    /* An exit between the disconnects and ucp_worker_destroy (an error in
     * finalize) must not leave the thread inside UCX while UCX's own
     * destructors run: exit handlers run before them. */
    static int registered;
    if (helper_running && !registered)
        registered = atexit(stop_helper) == 0;
}

ucs_status_t ucp_worker_create(ucp_handle context, const void *params, ucp_handle *worker)
{
    REAL("ucp_worker_create", ucs_status_t (*)(ucp_handle, const void *, ucp_handle *));
    ucs_status_t status = fn(context, params, worker);
    if (status == 0) {
        pthread_mutex_lock(&lock);
        if (nworkers < MAX_WORKERS)
            workers[nworkers++] = *worker;
        pthread_mutex_unlock(&lock);
    }
    return status;
}

void ucp_worker_destroy(ucp_handle worker)
{
    REAL("ucp_worker_destroy", void (*)(ucp_handle));
    stop_helper();
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nworkers; i++) {
        if (workers[i] == worker) {
            workers[i] = workers[--nworkers];
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    fn(worker);
}

/* "MAJOR.MINOR..." -> 1. By hand: a newer glibc's headers would make sscanf
 * or strtol need that glibc where the library is preloaded (an image's). */
static int parse_version(const char *text, int *major, int *minor)
{
    int *part[2] = {major, minor};
    for (int i = 0; i < 2; i++) {
        if (*text < '0' || *text > '9')
            return 0;
        for (*part[i] = 0; *text >= '0' && *text <= '9' && *part[i] < 10000; text++)
            *part[i] = *part[i] * 10 + (*text - '0');
        if (i == 0 && *text++ != '.')
            return 0;
    }
    return 1;
}

/* Whether the library that called is an MPICH before 4.2 (it defines
 * MPII_Version_string, "4.0.2"): 4.2 has no barrier there, and what it calls
 * between its disconnects and ucp_worker_destroy is not known here. Open MPI
 * 4.1 also disconnects with ucp_disconnect_nb, but calls other UCX functions
 * before it destroys its worker: it is left alone too. */
static int called_by_old_mpich(void *caller)
{
    static int answer = -1;
    Dl_info info;
    int major, minor;
    if (answer < 0) {
        answer = 0;
        if (dladdr(caller, &info) && info.dli_fname != NULL) {
            void *object = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
            if (object != NULL) {
                const char *version = dlsym(object, "MPII_Version_string");
                if (version != NULL && parse_version(version, &major, &minor))
                    answer = major < 4 || (major == 4 && minor < 2);
                dlclose(object);
            }
        }
    }
    return answer;
}

void *ucp_disconnect_nb(ucp_handle ep)
{
    REAL("ucp_disconnect_nb", void *(*)(ucp_handle));
    if (!called_by_old_mpich(__builtin_return_address(0)))
        return fn(ep);
    pthread_mutex_lock(&lock);
    if (!helper_running)
        start_helper();
    void *request = fn(ep);
    pthread_mutex_unlock(&lock);
    return request;
}

/* The calls MPICH makes while the thread may run: serialized with it. */
#define SERIALIZED(call) \
    do { \
        if (!helper_running) \
            return call; \
        pthread_mutex_lock(&lock); \
        __typeof__(call) result = call; \
        pthread_mutex_unlock(&lock); \
        return result; \
    } while (0)

unsigned ucp_worker_progress(ucp_handle worker)
{
    REAL("ucp_worker_progress", unsigned (*)(ucp_handle));
    SERIALIZED(fn(worker));
}

int ucp_request_is_completed(void *request)
{
    REAL("ucp_request_is_completed", int (*)(void *));
    SERIALIZED(fn(request));
}

ucs_status_t ucp_request_check_status(void *request)
{
    REAL("ucp_request_check_status", ucs_status_t (*)(void *));
    SERIALIZED(fn(request));
}

static void release_serialized(void (*fn)(void *), void *request)
{
    if (!helper_running) {
        fn(request);
        return;
    }
    pthread_mutex_lock(&lock);
    fn(request);
    pthread_mutex_unlock(&lock);
}

void ucp_request_release(void *request)
{
    REAL("ucp_request_release", void (*)(void *));
    release_serialized(fn, request);
}

void ucp_request_free(void *request)
{
    REAL("ucp_request_free", void (*)(void *));
    release_serialized(fn, request);
}
