import CStrata
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StrataCore
import StrataSystem

/// A description of every file under a directory (paths, types, modes, owners, sizes, content
/// hashes, symlink targets, device numbers, hardlink groups), to compare two unpacked trees.
public enum TreeListing {
    public static func list(_ root: String, ignoring: Set<String> = []) throws -> [String: String] {
        var out: [String: String] = [:]
        var inodeGroups: [UInt: [String]] = [:]
        let fm = FileManager.default
        guard let paths = fm.subpaths(atPath: root) else { return [:] }
        for p in paths.sorted() where !ignoring.contains(p) {
            let full = root + "/" + p
            var st = stat()
            guard lstat(full, &st) == 0 else { continue }
            let type = FileKind(mode: st.st_mode)
            var desc = String(format: "%o %d:%d", st.st_mode & 0o7777, st.st_uid, st.st_gid)
            switch type {
            case .regular:
                let data = try Data(contentsOf: URL(fileURLWithPath: full))
                desc += " file \(st.st_size) \(Digest.of(data).short)"
                if st.st_nlink > 1 { inodeGroups[UInt(st.st_ino), default: []].append(p) }
            case .directory: desc += " dir"
            case .symlink: desc += " link -> " + ((try? fm.destinationOfSymbolicLink(atPath: full)) ?? "?")
            case .characterDevice: desc += " char \(strata_major(st.st_rdev)),\(strata_minor(st.st_rdev))"
            case .blockDevice: desc += " block \(strata_major(st.st_rdev)),\(strata_minor(st.st_rdev))"
            case .fifo: desc += " fifo"
            default: desc += " other"
            }
            if type == .regular || type == .directory {
                let fd = open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                if fd >= 0 {
                    var names = [CChar](repeating: 0, count: 4096)
                    let n = strata_flistxattr(fd, &names, names.count)
                    var start = 0
                    var xs: [String] = []
                    for i in 0..<max(0, n) where names[i] == 0 {
                        let name = String(decoding: names[start..<i].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                        start = i + 1
                        if name.hasPrefix("trusted.overlay.") { continue }
                        var v = [UInt8](repeating: 0, count: 4096)
                        let m = strata_fgetxattr(fd, name, &v, v.count)
                        xs.append("\(name)=\(String(decoding: v[0..<max(0, m)], as: UTF8.self))")
                    }
                    close(fd)
                    if !xs.isEmpty { desc += " xattrs[" + xs.sorted().joined(separator: ",") + "]" }
                }
            }
            out[p] = desc
        }
        for (_, group) in inodeGroups where group.count > 1 {
            let sorted = group.sorted()
            for p in sorted { out[p]! += " hardlinks=" + sorted.joined(separator: ",") }
        }
        return out
    }

    /// Lines that differ, for readable failures.
    public static func diff(_ a: [String: String], _ b: [String: String]) -> [String] {
        var lines: [String] = []
        for k in Set(a.keys).union(b.keys).sorted() where a[k] != b[k] {
            lines.append("\(k): \(a[k] ?? "absent") | \(b[k] ?? "absent")")
        }
        return lines
    }
}
