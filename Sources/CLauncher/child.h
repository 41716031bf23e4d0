#ifndef STRATA_CHILD_H
#define STRATA_CHILD_H

#include <stdint.h>
#include <sys/types.h>

/* Internal to CLauncher: the steps shared by the container's first process and `exec`. */

/* Reports "stage errno" on err_fd and exits 125. */
void child_fail(int err_fd, int stage);
/* Closes every fd but 0-2 and the ones in keep[] (ascending, -1 entries ignored). */
int child_close_others(const int *keep, int n);
void child_sort_fds(int *a, int n);
/* Drops from the bounding set what is not kept (needs CAP_SETPCAP: before changing uid). */
int child_drop_bounding(uint64_t keep);
/* Sets the effective, permitted and inheritable sets (after the uid change). */
int child_set_caps(uint64_t keep);

/* A pseudo-terminal from the devpts this process sees at /dev/ptmx: the master is sent over
   console_socket (SCM_RIGHTS), the slave becomes the controlling terminal and fds 0-2. */
void child_console(int console_socket, int err_fd);
/* The two halves of child_console: open the pty and send the master (returns the slave);
   then, in the process that will exec, a new session with the slave as its terminal and 0-2. */
int child_console_open(int console_socket, int err_fd);
void child_console_take(int slave, int err_fd);

/* Makes stdio[0..2] (each >= 3, or -1 to leave that fd) the process's 0, 1 and 2, and closes
   the originals: strata's own stdin, stdout and stderr are gone from here on. */
void child_stdio(const int stdio[3], int err_fd);

/* Who the process becomes, and what it runs. */
struct child_identity {
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int ngroups;
    uint64_t capabilities;
    const char *cwd;
    const void *seccomp_filter;
    int seccomp_len;
    const char *path;
    char *const *argv;
    char *const *envp;
    int init_fd;
    char *const *init_argv;
    int no_new_privs;
    const struct strata_rlimit *rlimits;
    int nrlimits;
};

/* Groups, gid, uid, capabilities, no_new_privs if asked, working directory, default signals,
   the seccomp filter (last with no_new_privs, else first: see child_drop), then exec; reports the step that fails on err_fd. Does not return. */
void child_become(const struct child_identity *id, int err_fd);
/* The two halves of child_become: everything up to the seccomp filter; then the exec. */
void child_drop(const struct child_identity *id, int err_fd);
void child_exec(const struct child_identity *id, int err_fd);

#endif
