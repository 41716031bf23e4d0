/// Docker's default seccomp profile (moby `profiles/seccomp`), written out as strata's own
/// values: an allowlist, so that a syscall the kernel gains later is refused until it is listed.
/// What it keeps out of a container without the matching capability: new namespaces (`unshare`,
/// namespace flags to `clone`, `clone3`), `mount` and the new mount API, `bpf`, `perf_event_open`,
/// `keyctl` and the other key syscalls, `open_by_handle_at`, module loading, `reboot`, clock
/// setting, `kexec`, `ptrace` before kernel 4.8, and the `personality` values other than the
/// common ones.
extension SeccompProfile {
    public static let dockerDefault: SeccompProfile = {
        typealias R = Rule
        func caps(_ c: String...) -> Filter { Filter(caps: c.map { "CAP_" + $0 }) }
        func arches(_ a: String...) -> Filter { Filter(arches: a) }
        var rules: [Rule] = [R(names: allowed.split(separator: " ").map(String.init))]
        rules.append(R(names: ["process_vm_readv", "process_vm_writev", "ptrace"], includes: Filter(minKernel: "4.8")))
        // socket: every family but AF_VSOCK (40).
        rules.append(R(names: ["socket"], args: [Arg(index: 0, value: 40, op: "SCMP_CMP_NE")]))
        // personality: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query 0xffffffff.
        for p: UInt64 in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
            rules.append(R(names: ["personality"], args: [Arg(index: 0, value: p, op: "SCMP_CMP_EQ")]))
        }
        rules.append(R(names: ["sync_file_range2", "swapcontext"], includes: arches("ppc64le")))
        rules.append(R(names: ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
                               "set_tls"], includes: arches("arm", "arm64")))
        rules.append(R(names: ["arch_prctl"], includes: arches("amd64", "x32")))
        rules.append(R(names: ["modify_ldt"], includes: arches("amd64", "x32", "x86")))
        rules.append(R(names: ["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"], includes: arches("s390", "s390x")))
        rules.append(R(names: ["riscv_flush_icache"], includes: arches("riscv64")))
        rules.append(R(names: ["open_by_handle_at"], includes: caps("DAC_READ_SEARCH")))
        rules.append(R(names: ["bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
                               "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
                               "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
                               "umount2", "unshare"], includes: caps("SYS_ADMIN")))
        // clone without CAP_SYS_ADMIN: no namespace flag (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET).
        let namespaceFlags: UInt64 = 0x7E02_0000
        rules.append(R(names: ["clone"], args: [Arg(index: 0, value: namespaceFlags, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ")],
                       excludes: Filter(caps: ["CAP_SYS_ADMIN"], arches: ["s390", "s390x"])))
        rules.append(R(names: ["clone"], args: [Arg(index: 1, value: namespaceFlags, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ")],
                       includes: arches("s390", "s390x"), excludes: caps("SYS_ADMIN")))
        // clone3 cannot be filtered by its flags (they are in memory): ENOSYS makes libc fall back to clone.
        rules.append(R(names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: 38, excludes: caps("SYS_ADMIN")))
        rules.append(R(names: ["reboot"], includes: caps("SYS_BOOT")))
        rules.append(R(names: ["chroot"], includes: caps("SYS_CHROOT")))
        rules.append(R(names: ["delete_module", "init_module", "finit_module"], includes: caps("SYS_MODULE")))
        rules.append(R(names: ["acct"], includes: caps("SYS_PACCT")))
        rules.append(R(names: ["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"],
                       includes: caps("SYS_PTRACE")))
        rules.append(R(names: ["iopl", "ioperm"], includes: caps("SYS_RAWIO")))
        rules.append(R(names: ["settimeofday", "stime", "clock_settime", "clock_settime64"], includes: caps("SYS_TIME")))
        rules.append(R(names: ["vhangup"], includes: caps("SYS_TTY_CONFIG")))
        rules.append(R(names: ["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"], includes: caps("SYS_NICE")))
        rules.append(R(names: ["syslog"], includes: caps("SYSLOG")))
        rules.append(R(names: ["bpf"], includes: caps("BPF")))
        rules.append(R(names: ["perf_event_open"], includes: caps("PERFMON")))
        return SeccompProfile(
            defaultAction: "SCMP_ACT_ERRNO", defaultErrnoRet: 1,
            archMap: [
                ArchMap(architecture: "SCMP_ARCH_X86_64", subArchitectures: ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
                ArchMap(architecture: "SCMP_ARCH_AARCH64", subArchitectures: ["SCMP_ARCH_ARM"]),
                ArchMap(architecture: "SCMP_ARCH_S390X", subArchitectures: ["SCMP_ARCH_S390"]),
                ArchMap(architecture: "SCMP_ARCH_RISCV64", subArchitectures: nil),
            ],
            syscalls: rules)
    }()

    /// Allowed for every container.
    static let allowed = """
        accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 clock_adjtime \
        clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep \
        clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create \
        epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 \
        execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir \
        fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork \
        fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex \
        futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 \
        getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority \
        getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid \
        getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch \
        inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents \
        io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 \
        lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 \
        madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall \
        mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend \
        mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap \
        name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal \
        pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 \
        prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink \
        readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename \
        renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo \
        rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity \
        sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler \
        sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam \
        sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send \
        sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 \
        setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid \
        setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area \
        set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd \
        signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink \
        symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun \
        timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime \
        timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask \
        uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write \
        writev
        """
}
