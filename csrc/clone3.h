/* clone3(2) as glibc 2.36 does not declare it: shim.c and child.c. */
#include <stdint.h>

#ifndef SYS_clone3
#define SYS_clone3 435 /* the same on every architecture */
#endif
#define PYCTR_CLONE_INTO_CGROUP 0x200000000ULL

/* struct clone_args of linux/sched.h, up to its cgroup field (version 2) */
struct pyctr_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
        set_tid, set_tid_size, cgroup;
};
