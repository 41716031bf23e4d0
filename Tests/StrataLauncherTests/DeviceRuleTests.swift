import Foundation
#if canImport(Glibc)
import Glibc
#endif
import CStrata
import Testing
import StrataTestSupport
@testable import StrataCore
@testable import StrataLauncher
import StrataSystem

/// The device allowlist: one list, written as v1 `devices.allow` lines and compiled into the v2
/// BPF program.
@Suite struct DeviceRuleTests {
    @Test func defaultsAsV1Lines() {
        #expect(DeviceRule.defaults.map(\.description) == [
            "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
            "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",
        ])
        // /dev/net/tun comes only with an explicit device, as in Docker.
        #expect(!DeviceRule.defaults.contains { $0.major == 10 })
    }

    /// The spec carries the list and the launcher reads it back as it was; a list in any other
    /// form (a hand-edited config.json) is refused, never read as "every device".
    @Test func specRoundTrip() throws {
        func spec(_ devices: [RuntimeSpec.Device]) -> RuntimeSpec {
            RuntimeSpec(process: RuntimeSpec.Process(user: RuntimeSpec.User(uid: 0, gid: 0), args: ["true"], env: [], cwd: "/"),
                        root: RuntimeSpec.Root(path: "rootfs"), hostname: nil, mounts: [], annotations: nil,
                        linux: RuntimeSpec.Linux(namespaces: [], resources: RuntimeSpec.Resources(devices: devices)))
        }
        #expect(try spec(RuntimeSpec.devices(DeviceRule.defaults)).deviceRules() == DeviceRule.defaults)
        #expect(try spec(RuntimeSpec.devices(nil)).deviceRules() == nil)
        let deny = RuntimeSpec.Device(allow: false, access: "rwm")
        for bad in [[], [deny, RuntimeSpec.Device(allow: true, type: "cb", access: "rwm")],
                    [deny, RuntimeSpec.Device(allow: true, type: "c", major: 1, minor: 3, access: "")],
                    [deny, RuntimeSpec.Device(allow: true, type: "c", major: 1, minor: 3, access: "rwx")],
                    [deny, RuntimeSpec.Device(allow: false, type: "c", major: 1, minor: 3, access: "rwm")],
                    [RuntimeSpec.Device(allow: true, access: "rwm"), deny],
                    [RuntimeSpec.Device(allow: true, type: "c", major: 1, minor: 3, access: "rwm")]] {
            #expect(throws: StrataError.self, "\(bad)") { try spec(bad).deviceRules() }
        }
        // The CPU quota survives the round trip to the microsecond the cgroup gets.
        var cpu = spec([])
        for quota: Int64 in [1000, 1570, 1571, 33_333, 150_001] {
            cpu.linux.resources?.cpu = RuntimeSpec.CPU(quota: quota, period: 100_000)
            #expect(Int64((try #require(cpu.limits.cpus) * 100_000).rounded()) == quota)
        }
    }

    @Test func programShape() throws {
        // The prologue (6), per rule: type, access check (3, skipped for rwm), major, minor, return
        // (2); the deny at the end (2).
        #expect(try DeviceFilter.program([]).count == 8)
        #expect(try DeviceFilter.program([DeviceRule(.char, 1, 3, .rwm)]).count == 6 + 5 + 2)
        #expect(try DeviceFilter.program([DeviceRule(.block, nil, nil, .mknod)]).count == 6 + 6 + 2)
        #expect(try DeviceFilter.program([DeviceRule(.all, nil, nil, .rwm)]).count == 6 + 2 + 2)
        let p = try DeviceFilter.program(DeviceRule.defaults)
        // Ends with r0 = 0; exit.
        #expect(p.suffix(2) == [0x0000_0000_0000_00b4, 0x0000_0000_0000_0095])
        // A jump of the first rule (type != char) lands on the second rule's first instruction.
        let jump = p[6]
        #expect(jump & 0xff == 0x55 && Int16(truncatingIfNeeded: jump >> 16) == 5)
        #expect(throws: StrataError.self) { try DeviceFilter.program([DeviceRule(.char, 1, 3, [])]) }
        #expect(throws: StrataError.self) { try DeviceFilter.program([DeviceRule(.char, 1 << 40, 3, .read)]) }
    }
}

/// cgroup v2 with real cgroups (the VM job, scripts/test-v2.sh, runs them; the host is v1).
@Suite(.serialized, .enabled(if: isRoot && FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers"),
                             "needs root and a cgroup v2 host"))
struct CgroupV2Tests {
    /// A block device of this machine (a disk where there is one), as "major:minor".
    static func blockDevice() -> (Int64, Int64) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/dev/block")) ?? []).sorted()
        let pick = names.first { !$0.hasPrefix("7:") && !$0.hasPrefix("1:") } ?? names.first ?? "7:0"
        let parts = pick.split(separator: ":").compactMap { Int64($0) }
        return (parts[0], parts[1])
    }

    /// A process in the container's cgroup may make any device node but open only the allowed
    /// ones: a block device of the host is refused with EPERM, /dev/null and /dev/zero work.
    @Test func deviceAllowlistIsABPFProgram() throws {
        guard case .v2? = CgroupLayout.current() else { Issue.record("not a v2 layout"); return }
        let t = TempDir("strata-dev"); defer { t.remove() }
        let (major, minor) = CgroupV2Tests.blockDevice()
        #expect(strata_mknodat(AT_FDCWD, t.sub("outside"), S_IFBLK | 0o600, UInt32(major), UInt32(minor)) == 0)
        // Outside the cgroup, root opens it (or the device is missing): never EPERM.
        let fd = open(t.sub("outside"), O_RDONLY)
        let outsideErrno = fd < 0 ? errno : 0
        if fd >= 0 { close(fd) }
        #expect(outsideErrno != EPERM, "the node opens outside the cgroup")

        let cg = Cgroup(layout: try #require(CgroupLayout.current()), id: "devtest-\(getpid())", parent: "strata")
        try cg.create(Limits())
        defer { cg.remove() }
        #expect(mkfifo(t.sub("go"), 0o600) == 0)
        let script = """
            read go < \(t.sub("go")); exec > \(t.sub("out")) 2>&1
            mknod \(t.sub("blk")) b \(major) \(minor) && echo mknod-ok
            head -c1 \(t.sub("blk")) > /dev/null && echo BLOCK-OPENED
            head -c1 \(t.sub("outside")) > /dev/null && echo OUTSIDE-OPENED
            echo x > /dev/null && echo null-ok
            head -c1 /dev/zero > /dev/null && echo zero-ok
            echo done
            """
        let pid = try spawn(["/bin/sh", "-c", script])
        try cg.join(pid)
        let go = open(t.sub("go"), O_WRONLY)
        _ = write(go, "go\n", 3)
        close(go)
        #expect(reap(pid) == 0)
        let out = readString(t.sub("out")) ?? ""
        #expect(out.contains("mknod-ok") && out.contains("null-ok") && out.contains("zero-ok") && out.contains("done"), "\(out)")
        #expect(!out.contains("OPENED"), "\(out)")
        #expect(out.components(separatedBy: "Operation not permitted").count == 3, "EPERM for both nodes: \(out)")
    }

    /// --privileged (devices: nil): no program, the block device opens as outside.
    @Test func privilegedHasNoAllowlist() throws {
        let layout = try #require(CgroupLayout.current())
        let t = TempDir("strata-dev"); defer { t.remove() }
        let (major, minor) = CgroupV2Tests.blockDevice()
        let cg = Cgroup(layout: layout, id: "devtest-priv-\(getpid())", parent: "strata")
        try cg.create(Limits(), devices: nil)
        defer { cg.remove() }
        #expect(mkfifo(t.sub("go"), 0o600) == 0)
        let pid = try spawn(["/bin/sh", "-c", "read go < \(t.sub("go")); exec > \(t.sub("out")) 2>&1; mknod \(t.sub("b")) b \(major) \(minor); head -c1 \(t.sub("b")) > /dev/null; echo rc=$?"])
        try cg.join(pid)
        let go = open(t.sub("go"), O_WRONLY)
        _ = write(go, "go\n", 3)
        close(go)
        _ = reap(pid)
        #expect(!(readString(t.sub("out")) ?? "").contains("Operation not permitted"), "\(readString(t.sub("out")) ?? "")")
    }

    /// A cgroup that holds processes cannot enable controllers for its children: the error says
    /// so, names the cgroup and the way out, instead of only "cannot open …/memory.max".
    @Test func busyParentIsExplained() throws {
        guard case .v2(let root)? = CgroupLayout.current() else { Issue.record("not a v2 layout"); return }
        let busy = root + "/strata-test-busy-\(getpid())"
        try makeDirectory(busy)
        let pid = try spawn(["sleep", "60"])
        defer {
            kill(pid, SIGKILL); _ = reap(pid)
            rmdir(busy + "/strata"); rmdir(busy)
        }
        let procs = open(busy + "/cgroup.procs", O_WRONLY)
        #expect(procs >= 0)
        _ = write(procs, "\(pid)", "\(pid)".utf8.count)
        close(procs)
        let cg = Cgroup(layout: .v2(root: busy), id: "x", parent: "strata")
        defer { cg.remove() }
        do {
            try cg.create(Limits(memory: 64 << 20))
            Issue.record("the memory limit was set below a cgroup with processes")
        } catch let e as StrataError {
            #expect(e.description.contains("\(busy) holds processes") && e.description.contains("memory.max")
                    && e.description.contains("child cgroup"), "\(e)")
        }
        // Without limits nothing needs a controller: the container's process joins. (Had cpu
        // and pids been enabled alone in the busy cgroup, it would be a thread root and the
        // join would fail with EOPNOTSUPP.)
        let plain = Cgroup(layout: .v2(root: busy), id: "y", parent: "strata")
        defer { plain.remove() }
        try plain.create(Limits(pids: nil))
        #expect(readString(busy + "/cgroup.subtree_control")?.trimmingCharacters(in: .whitespacesAndNewlines) == "")
        let joiner = try spawn(["sleep", "60"])
        defer { kill(joiner, SIGKILL); _ = reap(joiner) }
        try plain.join(joiner)
        #expect(plain.isPopulated)
    }
}
