// Seccomp profiles in Docker's JSON format as `--security-opt seccomp=FILE` reads them, and
// what is decided from a profile before libseccomp sees it: actions, argument comparisons,
// whether a rule applies (capabilities, architectures, minimum kernel), the cache's encoding.
import FoundationEssentials
@testable import StrataLauncher

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = SeccompCompiler.version(String(decoding: bytes, as: UTF8.self))
    guard let profile = try? SeccompProfile.decode(bytes, path: "fuzz.json") else { return 0 }
    let machines = [SeccompCompiler.Machine(arch: "amd64", kernel: (6, 1)), SeccompCompiler.Machine(arch: "s390x", kernel: (4, 4))]
    _ = SeccompCompiler.action(profile.defaultAction, errno: profile.defaultErrnoRet)
    for rule in profile.syscalls ?? [] {
        for machine in machines {
            for caps in [CapabilitySet.dockerDefault, CapabilitySet.all] {
                _ = SeccompCompiler.applies(rule, capabilities: caps, machine: machine)
            }
        }
        _ = SeccompCompiler.action(rule.action, errno: rule.errnoRet)
        for arg in rule.args ?? [] { _ = try? SeccompCompiler.comparison(arg, rule: rule) }
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    _ = try? encoder.encode(profile)
    return 0
}
