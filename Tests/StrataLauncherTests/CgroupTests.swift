import Foundation
import Testing
import StrataTestSupport
@testable import StrataCore
@testable import StrataLauncher
import StrataSystem

/// cgroup detection and files, against a fake tree (the v2 path cannot run on this machine).
@Suite struct CgroupTests {
    @Test func detectsHybridAsV1() {
        let info = """
        30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
        31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
        32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
        33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
        34 30 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
        35 30 0:31 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
        36 30 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/lib/systemd/agent,name=systemd
        """
        let layout = CgroupLayout.detect(mountinfo: info) { _ in ["hugetlb"] }
        guard case .v1(let mounts) = layout else { Issue.record("not v1: \(String(describing: layout))"); return }
        #expect(mounts["memory"] == "/sys/fs/cgroup/memory" && mounts["cpu"] == "/sys/fs/cgroup/cpu,cpuacct" &&
                mounts["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct" && mounts["pids"] == "/sys/fs/cgroup/pids")
        // Every hierarchy is joined, the ones no limit uses and the hybrid unified one included.
        #expect(Set(mounts.values) == ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/pids",
                                       "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"])
        // What the container sees: each joined hierarchy once, with the host's controller options
        // (a release agent is not one of them).
        #expect(layout?.containerView(mountinfo: info) == [
            CgroupView(name: "cpu,cpuacct", fstype: "cgroup", data: "cpu,cpuacct"),
            CgroupView(name: "freezer", fstype: "cgroup", data: "freezer"),
            CgroupView(name: "memory", fstype: "cgroup", data: "memory"),
            CgroupView(name: "pids", fstype: "cgroup", data: "pids"),
            CgroupView(name: "systemd", fstype: "cgroup", data: "xattr,name=systemd"),
            CgroupView(name: "unified", fstype: "cgroup2", data: nil),
        ])
        #expect(CgroupLayout.v2(root: "/sys/fs/cgroup").containerView(mountinfo: "") == [CgroupView(name: nil, fstype: "cgroup2", data: nil)])
    }

    @Test func detectsUnifiedAsV2AndWritesItsFiles() throws {
        let t = TempDir(); defer { t.remove() }
        let info = "40 25 0:26 / \(t.path) rw - cgroup2 cgroup2 rw\n"
        let layout = try #require(CgroupLayout.detect(mountinfo: info) { _ in ["cpu", "memory", "pids", "io"] })
        #expect(layout == .v2(root: t.path))
        // The fake tree: the kernel would create the interface files; here they are made ahead.
        let dir = t.path + "/strata/abc"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in ["memory.max", "memory.swap.max", "cpu.max", "pids.max", "cgroup.procs"] {
            FileManager.default.createFile(atPath: dir + "/" + f, contents: nil)
        }
        for d in [t.path, t.path + "/strata"] { FileManager.default.createFile(atPath: d + "/cgroup.subtree_control", contents: nil) }
        let cg = Cgroup(layout: layout, id: "abc", parent: "strata")
        // devices: nil: a plain directory cannot hold the BPF device allowlist (CgroupV2Tests does).
        try cg.create(Limits(memory: 64 << 20, cpus: 0.5, pids: 10), devices: nil)
        #expect(readString(dir + "/memory.max") == "67108864")
        #expect(readString(dir + "/memory.swap.max") == "0")
        #expect(readString(dir + "/cpu.max") == "50000 100000")
        #expect(readString(dir + "/pids.max") == "10")
        #expect(readString(t.path + "/cgroup.subtree_control") == "+memory +cpu +pids")
        try cg.join(1234)
        #expect(readString(dir + "/cgroup.procs") == "1234")
    }
}

extension CgroupTests {
    /// The warm-up writes into the cgroup this process is already in (v2: the unified line; v1: a
    /// hierarchy the layout mounts, nested paths kept), and leaves the process where it was.
    @Test func warmUpRejoinsOwnCgroup() throws {
        let selfCgroup = "12:pids:/user.slice/a\n4:memory:/process_api/x\n1:cpu,cpuacct:/\n0::/init.scope\n"
        let v1 = CgroupLayout.v1(mounts: ["memory": "/m", "cpu": "/c", "pids": "/p"])
        #expect(CgroupWarmUp.ownProcsFile(layout: v1, selfCgroup: selfCgroup) == "/p/user.slice/a/cgroup.procs")
        #expect(CgroupWarmUp.ownProcsFile(layout: .v1(mounts: ["cpu": "/c"]), selfCgroup: selfCgroup) == "/c/cgroup.procs")
        #expect(CgroupWarmUp.ownProcsFile(layout: .v2(root: "/u"), selfCgroup: selfCgroup) == "/u/init.scope/cgroup.procs")
        #expect(CgroupWarmUp.ownProcsFile(layout: .v1(mounts: ["cpu": "/c"]), selfCgroup: "0::/x\n") == nil)
    }

    /// And on this host: the process is where it was after the warm-up.
    @Test(.enabled(if: getuid() == 0 && CgroupLayout.current() != nil, "needs root and cgroups"))
    func warmUpLeavesThisProcessInPlace() {
        let before = readString("/proc/self/cgroup")
        CgroupWarmUp.rejoinOwnCgroup()
        #expect(readString("/proc/self/cgroup") == before)
    }
}

extension CgroupTests {
    /// mountinfo lines as the kernel writes them: optional fields of any number before the lone
    /// "-", escaped mount points, a mount point named "-", an empty source, and lines too short to use.
    @Test func mountinfoEntries() {
        let info = """
        22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
        35 22 0:31 / /mnt/with\\040space rw shared:5 master:2 - tmpfs tmpfs rw,size=64k
        36 22 0:32 / - rw - tmpfs none rw
        37 22 0:33 / /short rw -
        garbage
        38 22 0:34 / /empty-source rw - tmpfs  rw,size=4k
        32 30 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
        """
        let entries = MountTable.entries(info)
        #expect(entries.map(\.mountPoint) == ["/", "/mnt/with space", "-", "/empty-source", "/sys/fs/cgroup/memory"])
        #expect(entries.map(\.fsType) == ["ext4", "tmpfs", "tmpfs", "tmpfs", "cgroup"])
        #expect(entries[3].superOptions == ["rw", "size=4k"])
        #expect(entries.last?.superOptions == ["rw", "memory"])
    }
}
