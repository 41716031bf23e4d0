import Foundation
import StrataCore

/// An OCI runtime-spec `config.json` (runtime-spec config.md, config-linux.md) for the same
/// container `strata run` would start: process, env, cwd, user, namespaces, mounts, limits,
/// capabilities, masked and read-only paths, and Docker's default seccomp profile resolved for
/// this machine and capability set. `runc run` takes it as it is.
public enum RuntimeBundle {
    public static func config(process: ProcessSpec, user: RootfsFiles.User, env: [String], hostname: String,
                              limits: Limits, readOnly: Bool, hostNetwork: Bool) -> [String: Any] {
        let caps = CapabilitySet.dockerDefault.prefixedNames
        var resources: [String: Any] = [:]
        if let m = limits.memory { resources["memory"] = ["limit": m, "swap": m] }
        if let c = limits.cpus { resources["cpu"] = ["quota": Int(c * 100_000), "period": 100_000] }
        if let p = limits.pids { resources["pids"] = ["limit": p] }
        var namespaces: [[String: String]] = ["pid", "ipc", "uts", "mount", "cgroup"].map { ["type": $0] }
        if !hostNetwork { namespaces.append(["type": "network"]) }
        let mounts: [[String: Any]] = [
            ["destination": "/proc", "type": "proc", "source": "proc"],
            ["destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]],
            ["destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]],
            ["destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]],
            ["destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]],
            ["destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]],
        ]
        return [
            "ociVersion": "1.0.2",
            "process": [
                "terminal": false,
                "user": ["uid": user.uid, "gid": user.gid, "additionalGids": user.groups],
                "args": process.args,
                "env": env,
                "cwd": process.cwd,
                "capabilities": ["bounding": caps, "effective": caps, "permitted": caps],
                "noNewPrivileges": true,
            ],
            "root": ["path": "rootfs", "readonly": readOnly],
            "hostname": hostname,
            "mounts": mounts,
            "linux": [
                "namespaces": namespaces,
                "resources": resources.merging(["devices": [["allow": false, "access": "rwm"]]]) { a, _ in a },
                "maskedPaths": ProcfsPolicy.masked,
                "readonlyPaths": ProcfsPolicy.readOnly,
                "seccomp": seccomp(.dockerDefault, capabilities: .dockerDefault),
            ],
        ]
    }

    /// A profile in the runtime spec's form (config-linux.md, "Seccomp"): Docker's rules with
    /// their capability, architecture and kernel conditions already decided here.
    static func seccomp(_ profile: SeccompProfile, capabilities: CapabilitySet,
                        machine: SeccompCompiler.Machine = .current) -> [String: Any] {
        var out: [String: Any] = ["defaultAction": profile.defaultAction]
        if let e = profile.defaultErrnoRet { out["defaultErrnoRet"] = e }
        let native = ["amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "s390x": "SCMP_ARCH_S390X",
                      "riscv64": "SCMP_ARCH_RISCV64"][machine.arch]
        if let native, let map = profile.archMap?.first(where: { $0.architecture == native }) {
            out["architectures"] = [native] + (map.subArchitectures ?? [])
        }
        out["syscalls"] = (profile.syscalls ?? []).filter { SeccompCompiler.applies($0, capabilities: capabilities, machine: machine) }.map { r in
            var rule: [String: Any] = ["names": r.allNames, "action": r.action]
            if let e = r.errnoRet { rule["errnoRet"] = e }
            if let args = r.args {
                rule["args"] = args.map { a in
                    var arg: [String: Any] = ["index": a.index, "value": a.value, "op": a.op]
                    if let v2 = a.valueTwo { arg["valueTwo"] = v2 }
                    return arg
                }
            }
            return rule
        }
        return out
    }
}
