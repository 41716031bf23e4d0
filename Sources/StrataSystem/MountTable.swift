#if canImport(Glibc)
import Glibc
#endif

/// Reads /proc/self/mountinfo.
public enum MountTable {
    /// The whole file. Read to the end: proc files report size 0, so size-based readers see nothing.
    public static func text() -> String? {
        guard let f = try? FDHandle.open("/proc/self/mountinfo", flags: .readOnly),
              let bytes = try? f.readAll(limit: 64 << 20, label: "/proc/self/mountinfo") else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// One line of mountinfo: where it is mounted (unescaped), the filesystem type and its
    /// per-superblock options (`rw,memory` for a v1 cgroup hierarchy).
    public struct Entry: Sendable, Equatable {
        public var mountPoint: String
        public var fsType: String
        public var superOptions: [String]
    }

    /// The lines of mountinfo `text`, split as bytes (a String split by Characters costs
    /// thousands of instructions per line); malformed lines are skipped. The optional fields end
    /// at a lone "-" after the six fixed ones, so a mount point called "-" is not mistaken for it.
    public static func entries(_ text: String) -> [Entry] {
        let bytes = Array(text.utf8)
        var out: [Entry] = []
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            // Empty fields kept (a filesystem may have an empty source): positions stay right.
            let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            guard fields.count >= 9,
                  let dash = fields[6...].firstIndex(where: { $0.count == 1 && $0.first == UInt8(ascii: "-") }),
                  fields.count >= dash + 4 else { continue }
            let point = unescape(String(decoding: fields[4], as: UTF8.self))
            let options = fields[dash + 3].split(separator: UInt8(ascii: ",")).map { String(decoding: $0, as: UTF8.self) }
            out.append(Entry(mountPoint: point, fsType: String(decoding: fields[dash + 1], as: UTF8.self), superOptions: options))
        }
        return out
    }

    /// The mount points of this mount namespace.
    public static func mountPoints() -> Set<String> {
        guard let text = text() else { return [] }
        return Set(entries(text).map(\.mountPoint))
    }

    /// Whether `path` (canonical) is a mount point.
    public static func isMountPoint(_ path: String) -> Bool { mountPoints().contains(path) }

    /// mountinfo escapes space, tab, newline and backslash as \\ooo.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var bytes: [UInt8] = []
        var u = Array(s.utf8)[...]
        while let b = u.first {
            if b == UInt8(ascii: "\\"), u.count >= 4, let v = UInt8(String(decoding: u.dropFirst().prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(v)
                u = u.dropFirst(4)
            } else {
                bytes.append(b)
                u = u.dropFirst()
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

