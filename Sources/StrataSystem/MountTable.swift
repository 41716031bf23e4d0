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

    /// The mount points of this mount namespace.
    public static func mountPoints() -> Set<String> {
        guard let text = text() else { return [] }
        var out: Set<String> = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { continue }
            out.insert(unescape(String(fields[4])))
        }
        return out
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

