#ifndef CSTRATA_H
#define CSTRATA_H

#include <sys/types.h>
#include <stdint.h>

/// Resolution flags for `strata_openat2`, mirroring <linux/openat2.h>.
#define STRATA_RESOLVE_NO_XDEV        0x01
#define STRATA_RESOLVE_NO_MAGICLINKS  0x02
#define STRATA_RESOLVE_NO_SYMLINKS    0x04
#define STRATA_RESOLVE_BENEATH        0x08
#define STRATA_RESOLVE_IN_ROOT        0x10

/// openat2(2): returns an fd or -1 with errno set (ENOSYS where the kernel lacks it).
int strata_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);

/// syncfs(2) on the filesystem holding `fd`.
int strata_syncfs(int fd);

/// flock(2) (Swift sees `flock` as the struct of the same name).
int strata_flock(int fd, int operation);

/// mknodat(2) with the device number built from major/minor (makedev is a macro).
int strata_mknodat(int dirfd, const char *name, mode_t mode, unsigned int major, unsigned int minor);
unsigned int strata_major(dev_t dev);
unsigned int strata_minor(dev_t dev);

/// Switches the calling thread (only) to the C.UTF-8 locale, so libarchive converts
/// UTF-8 names (PAX headers) without loss. Returns the previous locale handle for
/// `strata_restore_locale`, or NULL when C.UTF-8 is unavailable.
void *strata_use_utf8_locale(void);
void strata_restore_locale(void *previous);

/// An open-file-description byte-range lock on one byte at `offset` (F_OFD_SETLK[W]):
/// `type` 0 unlock, 1 shared, 2 exclusive; `wait` blocks. Returns 0, or -1 with errno
/// (EAGAIN when not waiting and held elsewhere).
int strata_ofd_lock(int fd, int64_t offset, int type, int wait);

/// renameat2(RENAME_EXCHANGE): swaps two names in `dirfd` atomically. 0, or -1 with errno.
int strata_exchange_names(int dirfd, const char *a, const char *b);
struct winsize;
/// ioctl(TIOCGWINSZ): the terminal's size. 0, or -1 with errno.
int strata_get_winsize(int fd, struct winsize *ws);
/// fstatfs(2)'s f_type of `fd`'s filesystem, or -1.
long strata_fs_type(int fd);
/// pipe2(O_CLOEXEC). 0, or -1 with errno.
int strata_pipe2_cloexec(int fds[2]);
/// renameat2(RENAME_NOREPLACE): renames `a` in `olddirfd` to `b` in `newdirfd` unless `b` exists.
int strata_rename_noreplace(int olddirfd, const char *a, int newdirfd, const char *b);

/// Waits up to `timeout_ms` for `fd` to be readable (or hung up): 1 when it is, 0 on timeout,
/// -1 with errno.
int strata_wait_readable(int fd, int timeout_ms);

/// Mounts overlayfs at `target` with the new mount API: one `lowerdir+` per lower dir (top
/// first, no page-size limit), index/redirect_dir/metacopy off. `readonly` omits upper/work;
/// `userxattr` keeps overlay's state in user.overlay.* (in a user namespace).
/// On failure returns -1 with errno and the kernel's messages in `err`.
int strata_overlay_mount_fsconfig(const char *target, const char *const *lowers, int nlowers,
                                  const char *upper, const char *work, int readonly, int userxattr,
                                  char *err, size_t errlen);
/// Runs the program at `path` with `argv` (stdin and stdout /dev/null, no fd but 0-2) and waits
/// for it: 0 when it exits 0, else its exit code (128+N for signal N; -1 with errno when it could
/// not be started); what it wrote to stderr in `err`. For fuse-overlayfs, which stays as a
/// daemon once it has mounted.
int strata_run_helper(const char *path, char *const argv[], char *err, size_t errlen);
/// 0 when fsopen("overlay") works (kernel has the new mount API and overlayfs).
int strata_fsopen_overlay_probe(void);
/// mount(2) run from `dir` in a forked child, so relative paths in `data` resolve there.
int strata_mount_in_dir(const char *dir, const char *source, const char *target, const char *fstype,
                        unsigned long flags, const char *data);
int strata_mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data);
int strata_umount(const char *target, int flags);
unsigned long strata_ms_bind(void);
int strata_mnt_detach(void);

/// copy_file_range(2) between the current offsets of two fds.
ssize_t strata_copy_file_range(int from, int to, size_t len);

/// Keeps an SQLite connection from checkpointing and deleting the WAL when it closes: a short
/// command (most of strata's) then opens and closes the store without an fsync.
/// `db` is the connection's sqlite3 pointer. Returns 0 on success.
int strata_sqlite_keep_wal(void *db);

/// O_TMPFILE: an unnamed file in a directory, gone when closed (spools leave nothing behind).
#define STRATA_O_TMPFILE (020000000 | 0200000)

/// O_PATH (not exported by Swift's Glibc module).
#define STRATA_O_PATH 010000000

/// Extended attributes through an fd (sys/xattr.h is not in Swift's Glibc module).
int strata_fsetxattr(int fd, const char *name, const void *value, size_t size, int flags);
ssize_t strata_fgetxattr(int fd, const char *name, void *value, size_t size);
ssize_t strata_flistxattr(int fd, char *list, size_t size);

/// memfd_create(name, MFD_CLOEXEC): an anonymous file in memory.
int strata_memfd(const char *name);

/// A copy of the file open at `src` in a new memfd that is sealed against any change
/// (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE), close-on-exec; for exec'ing a
/// program into a container that nothing there can modify. Returns the fd or -1 with errno.
int strata_sealed_memfd_copy(int src, const char *name);

/// Waits up to `timeout_ms` for process `pid` (any process, not only a child) to end, through a
/// pidfd. 1: it ended (or never existed); 0: still there at the timeout; -1 with errno: no pidfd
/// here (the caller polls instead).
int strata_wait_process_end(pid_t pid, int timeout_ms);

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34; hidden from Swift's Glibc module):
/// the child closes every fd from `from` on. `actions` is a posix_spawn_file_actions_t.
int strata_spawn_closefrom(void *actions, int from);

#endif
