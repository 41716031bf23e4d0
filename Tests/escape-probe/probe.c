/*
 * The escape probe: run inside a container, it tries what an attacker in the container would
 * to reach the host, and prints one line per attempt:
 *
 *     NAME: blocked (REASON)      the attempt failed, as it must
 *     NAME: ESCAPED: DETAIL       the attempt reached something of the host
 *
 * It exits with the number of escapes. CANARY names a file that exists on the host only; any
 * way of opening it from inside is an escape. Built static by the tests (`cc -static`).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

static int escapes;

static void blocked(const char *name, int err) { printf("%s: blocked (%s)\n", name, strerror(err)); }
static void escaped(const char *name, const char *detail) { printf("%s: ESCAPED: %s\n", name, detail); escapes++; }

/* An attempt that must fail: rc < 0 is blocked. */
static void expect_fail(const char *name, long rc) {
    if (rc < 0) blocked(name, errno);
    else escaped(name, "the call succeeded");
}

static void fd_link(const char *dir, const char *entry, char *out, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, entry);
    ssize_t r = readlink(p, out, n - 1);
    out[r < 0 ? 0 : r] = 0;
}

/* Every fd from 3 to 1023 of this process, and every fd >= 3 of every other process. */
static void fds(void) {
    int found = 0;
    for (int fd = 3; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) < 0) continue;
        char p[64], target[512];
        snprintf(p, sizeof p, "%d", fd);
        fd_link("/proc/self/fd", p, target, sizeof target);
        char detail[700];
        snprintf(detail, sizeof detail, "own fd %d -> %s", fd, target);
        escaped("inherited-fd", detail);
        found = 1;
    }
    if (!found) blocked("inherited-fd", EBADF);

    found = 0;
    DIR *proc = opendir("/proc");
    if (!proc) { escaped("process-fds", "cannot list /proc"); return; }
    int self = getpid();
    struct dirent *d;
    while ((d = readdir(proc))) {
        int pid = atoi(d->d_name);
        if (pid <= 0 || pid == self) continue;
        char dir[64];
        snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
        DIR *fdd = opendir(dir);
        if (!fdd) continue;
        struct dirent *f;
        while ((f = readdir(fdd))) {
            if (f->d_name[0] == '.' || atoi(f->d_name) < 3) continue;
            char target[512], detail[1024];
            fd_link(dir, f->d_name, target, sizeof target);
            snprintf(detail, sizeof detail, "pid %d fd %s -> %s", pid, f->d_name, target);
            escaped("process-fds", detail);
            found = 1;
        }
        closedir(fdd);
    }
    closedir(proc);
    if (!found) blocked("process-fds", EBADF);
}

/* The reported attack: through a directory fd of pid 1, up to the host's /etc and /tmp. */
static void proc1_fd_walk(void) {
    int read_ok = 0, write_ok = 0;
    for (int fd = 3; fd < 1024; fd++) {
        char p[128];
        snprintf(p, sizeof p, "/proc/1/fd/%d/../../etc/shadow", fd);
        int f = open(p, O_RDONLY);
        if (f >= 0) { close(f); read_ok = 1; }
        snprintf(p, sizeof p, "/proc/1/fd/%d/../../tmp/ESCAPED", fd);
        f = open(p, O_WRONLY | O_CREAT, 0644);
        if (f >= 0) { close(f); write_ok = 1; }
    }
    if (read_ok) escaped("proc1-fd-read", "read a file through /proc/1/fd/N/../.."); else blocked("proc1-fd-read", ENOENT);
    if (write_ok) escaped("proc1-fd-write", "created a file through /proc/1/fd/N/../.."); else blocked("proc1-fd-write", ENOENT);
}

static void canary(const char *path) {
    if (!path || !*path) return;
    const char *prefixes[] = { "", "/proc/1/root", "/proc/1/cwd", "/proc/self/root", "/proc/1/root/../../.." };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        char p[1024], name[64];
        snprintf(p, sizeof p, "%s%s", prefixes[i], path);
        snprintf(name, sizeof name, "canary%s", prefixes[i]);
        int f = open(p, O_RDONLY);
        if (f >= 0) { close(f); escaped(name, p); } else blocked(name, errno);
    }
    /* chroot out of a chroot: with pivot_root and the old root detached, / is the top. */
    mkdir("/tmp/.probe-chroot", 0700);
    int cwd = open("/", O_PATH | O_DIRECTORY);
    if (chroot("/tmp/.probe-chroot") == 0) {
        for (int i = 0; i < 32; i++) if (chdir("..") != 0) break;
        if (chroot(".") == 0) {
            int f = open(path, O_RDONLY);
            if (f >= 0) { close(f); escaped("chroot-breakout", path); } else blocked("chroot-breakout", errno);
        } else blocked("chroot-breakout", errno);
        if (cwd >= 0) { fchdir(cwd); chroot("."); }
    } else blocked("chroot-breakout", errno);
    if (cwd >= 0) close(cwd);
}

static void exe_overwrite(void) {
    expect_fail("proc-self-exe-write", open("/proc/self/exe", O_WRONLY));
    expect_fail("proc1-exe-write", open("/proc/1/exe", O_WRONLY));
}

static void handles(void) {
    struct { struct file_handle h; unsigned char bytes[128]; } fh;
    fh.h.handle_bytes = 128;
    int mount_id;
    int fd = open("/", O_RDONLY | O_DIRECTORY);
    if (name_to_handle_at(AT_FDCWD, "/", &fh.h, &mount_id, 0) != 0) { blocked("open_by_handle_at", errno); return; }
    /* The root inode of the filesystem (inode 2), the classic "shocker" handle. */
    memset(fh.h.f_handle, 0, fh.h.handle_bytes);
    fh.h.f_handle[0] = 2;
    expect_fail("open_by_handle_at", syscall(SYS_open_by_handle_at, fd, &fh.h, O_RDONLY));
    close(fd);
}

static void mounts(void) {
    mkdir("/tmp/.probe-mnt", 0700);
    expect_fail("mount-tmpfs", mount("tmpfs", "/tmp/.probe-mnt", "tmpfs", 0, NULL));
    expect_fail("mount-proc", mount("proc", "/tmp/.probe-mnt", "proc", 0, NULL));
    expect_fail("mount-cgroup", mount("cgroup", "/tmp/.probe-mnt", "cgroup", 0, "memory"));
    expect_fail("remount-sys-rw", mount(NULL, "/sys", NULL, MS_REMOUNT | MS_BIND, NULL));
    expect_fail("umount-proc-sys", umount2("/proc/sys", MNT_DETACH));
    expect_fail("unshare-user", unshare(CLONE_NEWUSER));
    expect_fail("unshare-mount", unshare(CLONE_NEWNS));
    expect_fail("unshare-user-mount", unshare(CLONE_NEWUSER | CLONE_NEWNS));
}

/* mknod every block device the host has (listed in /sys/dev/block) and open it; then one line
   "block-devices opened: N of M" (the device allowlist: cgroup v1 devices.allow, v2 a BPF program). */
static void block_devices(void) {
    DIR *d = opendir("/sys/dev/block");
    int tried = 0, opened = 0;
    if (!d) { blocked("block-device", errno); printf("block-devices opened: 0 of 0\n"); return; }
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned ma, mi;
        if (sscanf(e->d_name, "%u:%u", &ma, &mi) != 2) continue;
        char p[64];
        snprintf(p, sizeof p, "/tmp/.probe-blk-%u-%u", ma, mi);
        unlink(p);
        tried++;
        if (mknod(p, S_IFBLK | 0600, makedev(ma, mi)) != 0) { blocked("block-device", errno); continue; }
        int f = open(p, O_RDONLY);
        if (f >= 0) {
            char detail[64];
            snprintf(detail, sizeof detail, "opened block device %u:%u", ma, mi);
            escaped("block-device", detail);
            opened++;
            close(f);
        } else blocked("block-device", errno);
        unlink(p);
    }
    closedir(d);
    if (!tried) blocked("block-device", ENOENT);
    printf("block-devices opened: %d of %d\n", opened, tried);
}

/* The caller's terminal and files: fds 0-2 are pipes, /dev/null or (with -t) a pty of the
   container's own devpts; never a host file or terminal. TIOCSTI on a terminal that is not the
   container's own would type into the host's shell, so a harmless byte is pushed on each. */
static void terminal(void) {
    struct stat own_pts, st;
    int have_pts = stat("/dev/pts/ptmx", &own_pts) == 0, own_tty = 0;
    for (int fd = 0; fd <= 2; fd++) {
        char name[32], detail[128];
        snprintf(name, sizeof name, "stdio-fd-%d", fd);
        if (fstat(fd, &st) != 0) { blocked(name, errno); continue; }
        if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode)) {
            snprintf(detail, sizeof detail, "fd %d is a host file (mode %o)", fd, st.st_mode);
            escaped(name, detail);
            continue;
        }
        blocked(name, EPERM);
        int own = have_pts && S_ISCHR(st.st_mode) && st.st_dev == own_pts.st_dev;
        own_tty |= own && isatty(fd);
        char c = 'x';
        snprintf(name, sizeof name, "tiocsti-fd-%d", fd);
        if (isatty(fd) && !own && ioctl(fd, TIOCSTI, &c) == 0) {
            snprintf(detail, sizeof detail, "pushed input into a terminal of the host through fd %d", fd);
            escaped(name, detail);
        } else blocked(name, isatty(fd) ? (own ? EPERM : errno) : ENOTTY);
    }
    /* A controlling terminal is the container's own pty (-t) or none at all. */
    int t = open("/dev/tty", O_RDWR | O_NOCTTY);
    if (t >= 0) {
        char c = 'x';
        if (!own_tty && ioctl(t, TIOCSTI, &c) == 0) escaped("controlling-tty", "a terminal of the host is the controlling terminal");
        else blocked("controlling-tty", own_tty ? EPERM : errno);
        close(t);
    } else blocked("controlling-tty", errno);
    /* Sessions: the process is not in the session of whoever started strata. */
    if (getsid(0) == 0) escaped("session", "in a session led from outside the container");
    else blocked("session", EPERM);
}

/* With --cap-add SYS_ADMIN mounts are allowed; what must not be reachable is a v1 hierarchy's
   root, whose release_agent runs as host root when a cgroup empties (CVE-2022-0492). */
static void release_agent(void) {
    const char *controllers[] = { "memory", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "pids",
                                  "net_cls", "perf_event", "hugetlb", "rdma", "misc", "none,name=systemd" };
    mkdir("/tmp/.probe-cg", 0700);
    for (size_t i = 0; i < sizeof controllers / sizeof controllers[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "release_agent %s", controllers[i]);
        if (mount("cgroup", "/tmp/.probe-cg", "cgroup", 0, controllers[i]) != 0) { blocked(name, errno); continue; }
        int f = open("/tmp/.probe-cg/release_agent", O_WRONLY);
        if (f >= 0) { escaped(name, "the hierarchy's root release_agent is writable"); close(f); }
        else blocked(name, errno);
        umount2("/tmp/.probe-cg", MNT_DETACH);
    }
}

/* `probe watch SECONDS`: every process that appears in the container's pid namespace must hold
   no capability this one lacks and be under seccomp when this one is (an exec helper that still
   has strata's privileges could be traced with CAP_SYS_PTRACE). */
static int watch(int seconds) {
    char line[256];
    unsigned long long mine = 0;
    int my_seccomp = 0, seen = 0;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "CapEff: %llx", &mine);
        sscanf(line, "Seccomp: %d", &my_seccomp);
    }
    if (f) fclose(f);
    time_t end = time(NULL) + seconds;
    while (time(NULL) < end) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == getpid()) continue;
            char p[64];
            snprintf(p, sizeof p, "/proc/%d/status", pid);
            FILE *s = fopen(p, "r");
            if (!s) continue;
            unsigned long long cap = 0;
            int sec = -1;
            while (fgets(line, sizeof line, s)) {
                sscanf(line, "CapEff: %llx", &cap);
                sscanf(line, "Seccomp: %d", &sec);
            }
            fclose(s);
            if (sec < 0) continue;
            seen++;
            if ((cap & ~mine) != 0 || (my_seccomp != 0 && sec == 0)) {
                char detail[128];
                snprintf(detail, sizeof detail, "pid %d CapEff %llx Seccomp %d", pid, cap, sec);
                escaped("privileged-process-visible", detail);
            }
        }
        if (d) closedir(d);
    }
    if (!escapes) blocked("privileged-process-visible", EPERM);
    printf("looked at %d processes\nescapes: %d\n", seen, escapes);
    return escapes > 100 ? 100 : escapes;
}

static void writes(void) {
    const char *files[] = { "/proc/sys/kernel/hostname", "/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger",
                            "/sys/kernel/uevent_helper", "/sys/kernel/mm/transparent_hugepage/enabled",
                            "/sys/class/net/lo/mtu" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "write %s", files[i]);
        expect_fail(name, open(files[i], O_WRONLY));
    }
    /* The container's own cgroups and the rest of the hierarchy. */
    DIR *d = opendir("/sys/fs/cgroup");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char p[512], name[600];
            snprintf(p, sizeof p, "/sys/fs/cgroup/%s/cgroup.procs", e->d_name);
            snprintf(name, sizeof name, "write %s", p);
            expect_fail(name, open(p, O_WRONLY));
            snprintf(p, sizeof p, "/sys/fs/cgroup/%s/probe-escape", e->d_name);
            snprintf(name, sizeof name, "mkdir %s", p);
            expect_fail(name, mkdir(p, 0755));
        }
        closedir(d);
    }
    expect_fail("write /sys/fs/cgroup/cgroup.procs", open("/sys/fs/cgroup/cgroup.procs", O_WRONLY));
    expect_fail("mkdir /sys/fs/cgroup/X", mkdir("/sys/fs/cgroup/probe-escape", 0755));
    int k = open("/proc/kcore", O_RDONLY);
    char b[16];
    if (k >= 0 && read(k, b, sizeof b) > 0) escaped("read /proc/kcore", "read bytes");
    else blocked("read /proc/kcore", k < 0 ? errno : 0);
    if (k >= 0) close(k);
}

static void syscalls(void) {
    expect_fail("keyctl", syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, "probe"));
    expect_fail("add_key", syscall(SYS_add_key, "user", "probe", "x", 1, -2 /* KEY_SPEC_PROCESS_KEYRING */));
    /* bpf and perf_event_open are what CAP_SYS_ADMIN grants (Docker's profile allows them then). */
    if (!getenv("PROBE_SYS_ADMIN")) {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.map_type = BPF_MAP_TYPE_ARRAY;
        attr.key_size = 4;
        attr.value_size = 4;
        attr.max_entries = 1;
        expect_fail("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
        struct perf_event_attr pe;
        memset(&pe, 0, sizeof pe);
        pe.type = PERF_TYPE_SOFTWARE;
        pe.size = sizeof pe;
        pe.config = PERF_COUNT_SW_CPU_CLOCK;
        expect_fail("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
    }
    expect_fail("init_module", syscall(SYS_init_module, NULL, 0, ""));
    expect_fail("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    expect_fail("setns", syscall(SYS_setns, 0, 0));
    expect_fail("settimeofday", syscall(SYS_settimeofday, NULL, NULL) == 0 ? 0 : -1);
    char params[120];  /* struct io_uring_params */
    memset(params, 0, sizeof params);
    long ring = syscall(425 /* io_uring_setup */, 1, params);
    expect_fail("io_uring", ring);
    if (ring >= 0) close((int)ring);
}

/* PROBE_LOCALNET_PORT=P (on a bridge with a published port, where netavark sets route_localnet):
   raw Ethernet frames to the gateway's MAC: one addressed to 127.0.0.1:P ("LOCALNET"), one to the
   gateway from the spoofed source 127.0.0.2 ("SPOOFED", which a host service would take for a
   local peer): the host must receive neither. One to the gateway's own address from the
   container's ("CONTROL") must arrive: the frames are well made. The test listens on the host. */
static unsigned short ip_checksum(const unsigned char *p, int n) {
    unsigned long sum = 0;
    for (int i = 0; i < n; i += 2) sum += (p[i] << 8) | p[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (unsigned short)~sum;
}

static void localnet(const char *port_text) {
    int port = atoi(port_text);
    FILE *f = fopen("/proc/net/route", "r");
    char line[256];
    unsigned gw = 0, dest, g;
    char ifname[32];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "%31s %x %x", ifname, &dest, &g) == 3 && dest == 0 && g != 0) gw = g;
    if (f) fclose(f);
    if (!gw) { blocked("localnet-udp", ENETUNREACH); return; }
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = gw };
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    sendto(u, "x", 1, 0, (struct sockaddr *)&to, sizeof to);  /* fills the neighbour table */
    close(u);
    usleep(300000);
    char gwtext[32], ip[32], hw[32], mac_text[32] = "";
    inet_ntop(AF_INET, &gw, gwtext, sizeof gwtext);
    f = fopen("/proc/net/arp", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "%31s %*s %*s %31s", ip, hw) == 2 && strcmp(ip, gwtext) == 0) strcpy(mac_text, hw);
    if (f) fclose(f);
    unsigned char gwmac[6];
    if (sscanf(mac_text, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &gwmac[0], &gwmac[1], &gwmac[2], &gwmac[3], &gwmac[4], &gwmac[5]) != 6) {
        blocked("localnet-udp", EHOSTUNREACH);
        return;
    }
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    if (s < 0) { blocked("localnet-udp", errno); return; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "eth0", IFNAMSIZ - 1);
    unsigned char mymac[6];
    if (ioctl(s, SIOCGIFHWADDR, &ifr) != 0) { blocked("localnet-udp", errno); close(s); return; }
    memcpy(mymac, ifr.ifr_hwaddr.sa_data, 6);
    if (ioctl(s, SIOCGIFADDR, &ifr) != 0) { blocked("localnet-udp", errno); close(s); return; }
    unsigned myip = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr;
    struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = (int)if_nametoindex("eth0"), .sll_halen = 6 };
    memcpy(ll.sll_addr, gwmac, 6);
    /* PORTPATH: to a reserved group address (01:80:c2:00:00:0e), which the bridge hands to its
       port's own stack instead of forwarding, from an address outside the subnet. */
    const char *payloads[4] = { "LOCALNET", "CONTROL", "SPOOFED", "PORTPATH" };
    unsigned dests[4] = { htonl(INADDR_LOOPBACK), gw, gw, gw };
    unsigned sources[4] = { myip, myip, htonl(0x7f000002), htonl(0xc0000262) };
    const unsigned char group[6] = { 0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e };
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 4; k++) {
            unsigned char frame[128];
            memset(frame, 0, sizeof frame);
            memcpy(frame, k == 3 ? group : gwmac, 6);
            memcpy(frame + 6, mymac, 6);
            frame[12] = 0x08; frame[13] = 0x00;
            unsigned char *iph = frame + 14, *udp = iph + 20, *data = udp + 8;
            int dlen = (int)strlen(payloads[k]);
            memcpy(data, payloads[k], dlen);
            int total = 20 + 8 + dlen;
            iph[0] = 0x45; iph[2] = total >> 8; iph[3] = total & 0xff; iph[8] = 64; iph[9] = 17;
            memcpy(iph + 12, &sources[k], 4);
            memcpy(iph + 16, &dests[k], 4);
            unsigned short c = ip_checksum(iph, 20);
            iph[10] = c >> 8; iph[11] = c & 0xff;
            udp[0] = 0x30; udp[1] = 0x39; udp[2] = port >> 8; udp[3] = port & 0xff;
            udp[4] = (8 + dlen) >> 8; udp[5] = (8 + dlen) & 0xff;  /* checksum 0: none */
            if (sendto(s, frame, 14 + total, 0, (struct sockaddr *)&ll, sizeof ll) < 0) { blocked("localnet-udp", errno); close(s); return; }
        }
        usleep(100000);
    }
    close(s);
    printf("localnet-udp: sent (the host must receive none of LOCALNET, SPOOFED, PORTPATH on port %d)\n", port);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 2 && strcmp(argv[1], "watch") == 0) return watch(atoi(argv[2]));
    fds();               /* first: before the probe opens anything itself */
    terminal();
    if (argc > 1 && strcmp(argv[1], "tty") == 0) {
        printf("escapes: %d\n", escapes);
        return escapes;
    }
    proc1_fd_walk();
    canary(getenv("CANARY"));
    exe_overwrite();
    handles();
    /* PROBE_SYS_ADMIN=1: the container was given CAP_SYS_ADMIN, mounts are expected to work. */
    if (getenv("PROBE_SYS_ADMIN")) release_agent(); else mounts();
    block_devices();
    writes();
    syscalls();
    if (getenv("PROBE_LOCALNET_PORT")) localnet(getenv("PROBE_LOCALNET_PORT"));
    printf("escapes: %d\n", escapes);
    return escapes > 100 ? 100 : escapes;
}
