import Foundation
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataLauncher

/// seccomp profiles and capability sets as values: Docker's JSON format, the conditions of
/// its rules, and the BPF program libseccomp makes of them.
@Suite struct SeccompTests {
    let amd64 = SeccompCompiler.Machine(arch: "amd64", kernel: (6, 1))

    @Test func ruleConditions() {
        typealias Rule = SeccompProfile.Rule
        typealias Filter = SeccompProfile.Filter
        let admin = CapabilitySet(names: ["SYS_ADMIN"]), none = CapabilitySet(mask: 0)
        let needsAdmin = Rule(names: ["mount"], includes: Filter(caps: ["CAP_SYS_ADMIN"]))
        #expect(SeccompCompiler.applies(needsAdmin, capabilities: admin, machine: amd64))
        #expect(!SeccompCompiler.applies(needsAdmin, capabilities: none, machine: amd64))
        let notAdmin = Rule(names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: 38, excludes: Filter(caps: ["CAP_SYS_ADMIN"]))
        #expect(!SeccompCompiler.applies(notAdmin, capabilities: admin, machine: amd64))
        #expect(SeccompCompiler.applies(notAdmin, capabilities: none, machine: amd64))
        let s390 = Rule(names: ["clone"], includes: Filter(arches: ["s390", "s390x"]))
        #expect(!SeccompCompiler.applies(s390, capabilities: none, machine: amd64))
        let newKernel = Rule(names: ["ptrace"], includes: Filter(minKernel: "4.8"))
        #expect(SeccompCompiler.applies(newKernel, capabilities: none, machine: amd64))
        #expect(!SeccompCompiler.applies(newKernel, capabilities: none, machine: .init(arch: "amd64", kernel: (4, 4))))
    }

    @Test func defaultProfileCompiles() throws {
        let plain = try SeccompCompiler.compile(.dockerDefault, capabilities: .dockerDefault)
        let admin = try SeccompCompiler.compile(.dockerDefault, capabilities: CapabilitySet(mask: CapabilitySet.dockerDefault.mask | CapabilitySet(names: ["SYS_ADMIN"]).mask))
        #expect(plain.count % 8 == 0 && plain.count / 8 > 100)
        // CAP_SYS_ADMIN allows mount, unshare, … and lifts the clone flag check: another program.
        #expect(plain != admin)
    }

    @Test func dockerJSONFormat() throws {
        let json = #"""
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
         "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
         "syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW"},
                      {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
                      {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                       "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                      {"names": ["no_such_syscall_anywhere"], "action": "SCMP_ACT_ALLOW"}]}
        """#
        let p = try JSONDecoder().decode(SeccompProfile.self, from: Data(json.utf8))
        #expect(p.syscalls?.first?.allNames == ["read"])
        // Two comparisons of one argument become two rules; unknown names are skipped, as Docker does.
        #expect(try !SeccompCompiler.compile(p, capabilities: .dockerDefault).isEmpty)
        var bad = p
        bad.syscalls?[0].action = "SCMP_ACT_EXPLODE"
        #expect { try SeccompCompiler.compile(bad, capabilities: .dockerDefault) } throws: {
            "\($0)".contains("SCMP_ACT_EXPLODE") && "\($0)".contains("read")
        }
    }

    @Test func capabilityFlags() throws {
        let held = CapabilitySet.all
        #expect(try CapabilitySet.resolve(add: [], drop: [], privileged: false) == CapabilitySet(mask: CapabilitySet.dockerDefault.mask & held.mask))
        let dropped = try CapabilitySet.resolve(add: [], drop: ["chown", "CAP_KILL"], privileged: false)
        #expect(!dropped.contains("CHOWN") && !dropped.contains("KILL") && dropped.contains("SETUID"))
        let only = try CapabilitySet.resolve(add: ["NET_ADMIN"], drop: ["ALL"], privileged: false)
        if held.contains("NET_ADMIN") { #expect(only.prefixedNames == ["CAP_NET_ADMIN"]) }
        #expect(try CapabilitySet.resolve(add: [], drop: [], privileged: true) == held)
        #expect { try CapabilitySet.resolve(add: ["NOT_A_CAP"], drop: [], privileged: false) } throws: { "\($0)".contains("NOT_A_CAP") }
    }

    /// The compiled program is kept per boot and reused; a cache file that is not a program
    /// (or not root's alone) is compiled again.
    @Test(.enabled(if: isRoot, "the cache is root's")) func compiledProgramsAreCached() throws {
        let t = TempDir("strata-seccomp-cache"); defer { t.remove() }
        let first = try SeccompCompiler.cachedCompile(.dockerDefault, capabilities: .dockerDefault, cacheDirectory: t.path)
        let files = try FileManager.default.contentsOfDirectory(atPath: t.path)
        #expect(files.count == 1 && files[0].hasSuffix(".bpf"))
        #expect(try SeccompCompiler.cachedCompile(.dockerDefault, capabilities: .dockerDefault, cacheDirectory: t.path) == first)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: t.sub(files[0])))
        #expect(try SeccompCompiler.cachedCompile(.dockerDefault, capabilities: .dockerDefault, cacheDirectory: t.path) == first)
        // Another capability set is another program, another file.
        _ = try SeccompCompiler.cachedCompile(.dockerDefault, capabilities: CapabilitySet(mask: 0), cacheDirectory: t.path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.path).filter { $0.hasSuffix(".bpf") }.count == 2)
        // A profile that differs in one errno is another program, another file; the same profile
        // decoded again is the same key.
        var changed = SeccompProfile.dockerDefault
        changed.defaultErrnoRet = (changed.defaultErrnoRet ?? 1) + 1
        _ = try SeccompCompiler.cachedCompile(changed, capabilities: .dockerDefault, cacheDirectory: t.path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.path).filter { $0.hasSuffix(".bpf") }.count == 3)
        let again = try JSONDecoder().decode(SeccompProfile.self, from: JSONEncoder().encode(SeccompProfile.dockerDefault))
        #expect(try SeccompCompiler.cachedCompile(again, capabilities: .dockerDefault, cacheDirectory: t.path) == first)
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.path).filter { $0.hasSuffix(".bpf") }.count == 3)
    }
}
