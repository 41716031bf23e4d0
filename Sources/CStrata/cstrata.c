#define _GNU_SOURCE
#include "cstrata.h"

#include <errno.h>
#include <spawn.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

struct strata_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

int strata_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct strata_open_how how;
    memset(&how, 0, sizeof how);
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

int strata_syncfs(int fd) { return syncfs(fd); }

int strata_flock(int fd, int operation) { return flock(fd, operation); }

int strata_mknodat(int dirfd, const char *name, mode_t mode, unsigned int major, unsigned int minor) {
    return mknodat(dirfd, name, mode, makedev(major, minor));
}

unsigned int strata_major(dev_t dev) { return major(dev); }
unsigned int strata_minor(dev_t dev) { return minor(dev); }

void *strata_use_utf8_locale(void) {
    static __thread locale_t utf8 = (locale_t)0;
    if (utf8 == (locale_t)0) {
        utf8 = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
        if (utf8 == (locale_t)0) return NULL;
    }
    return (void *)uselocale(utf8);
}

void strata_restore_locale(void *previous) {
    if (previous != NULL) uselocale((locale_t)previous);
}

int strata_fsetxattr(int fd, const char *name, const void *value, size_t size, int flags) {
    return fsetxattr(fd, name, value, size, flags);
}
ssize_t strata_fgetxattr(int fd, const char *name, void *value, size_t size) {
    return fgetxattr(fd, name, value, size);
}
ssize_t strata_flistxattr(int fd, char *list, size_t size) { return flistxattr(fd, list, size); }

int strata_ofd_lock(int fd, int64_t offset, int type, int wait) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type == 0 ? F_UNLCK : (type == 1 ? F_RDLCK : F_WRLCK);
    fl.l_whence = SEEK_SET;
    fl.l_start = offset;
    fl.l_len = 1;
    return fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
}

int strata_exchange_names(int dirfd, const char *a, const char *b) {
    return renameat2(dirfd, a, dirfd, b, RENAME_EXCHANGE);
}

int strata_get_winsize(int fd, struct winsize *ws) { return ioctl(fd, TIOCGWINSZ, ws); }

long strata_fs_type(int fd) {
    struct statfs sv;
    return fstatfs(fd, &sv) == 0 ? (long)sv.f_type : -1;
}

int strata_pipe2_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int strata_rename_noreplace(int olddirfd, const char *a, int newdirfd, const char *b) {
    return renameat2(olddirfd, a, newdirfd, b, RENAME_NOREPLACE);
}

int strata_wait_readable(int fd, int timeout_ms) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, timeout_ms);
    return r < 0 ? -1 : (r > 0 ? 1 : 0);
}

ssize_t strata_copy_file_range(int from, int to, size_t len) {
    return copy_file_range(from, NULL, to, NULL, len, 0);
}

int strata_sqlite_keep_wal(void *db) {
    sqlite3 *conn = (sqlite3 *)db;
    int one = 1;
    int r = sqlite3_file_control(conn, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
    if (r != SQLITE_OK) return r;
    return sqlite3_db_config(conn, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)0);
}

int strata_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int strata_wait_process_end(pid_t pid, int timeout_ms) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) return errno == ESRCH ? 1 : -1;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r;
    do { r = poll(&p, 1, timeout_ms); } while (r < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    errno = saved;
    return r < 0 ? -1 : r > 0;
}

int strata_sealed_memfd_copy(int src, const char *name) {
    struct stat st;
    if (fstat(src, &st) != 0) return -1;
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    off_t off = 0;
    while (off < st.st_size) {
        ssize_t n = sendfile(fd, src, &off, (size_t)(st.st_size - off));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { int e = n < 0 ? errno : EIO; close(fd); errno = e; return -1; }
    }
    if (fchmod(fd, 0555) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0) {
        int e = errno; close(fd); errno = e; return -1;
    }
    return fd;
}

int strata_spawn_closefrom(void *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, from);
}
