import Foundation
import StrataCore

/// An OCI runtime-spec `config.json` (runtime-spec config.md, config-linux.md) for the same
/// container `strata run` would start: process, env, cwd, user, namespaces, mounts, limits,
/// capabilities, masked and read-only paths. `runc run` takes it as it is.
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
            ],
        ]
    }
}
