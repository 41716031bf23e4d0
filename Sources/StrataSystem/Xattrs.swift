#if canImport(Glibc)
import Glibc
#endif
import CStrata

/// Extended attributes of open files.
public enum Xattrs {
    /// Every extended attribute of the open file `fd`, sorted by name (values up to 64 KiB).
    public static func list(_ fd: Int32) -> [(String, [UInt8])] {
        var names = [CChar](repeating: 0, count: 4096)
        let n = strata_flistxattr(fd, &names, names.count)
        guard n > 0 else { return [] }
        var out: [(String, [UInt8])] = []
        var start = 0
        for i in 0..<n where names[i] == 0 {
            let name = String(decoding: names[start..<i].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            start = i + 1
            var value = [UInt8](repeating: 0, count: 65536)
            let m = strata_fgetxattr(fd, name, &value, value.count)
            if m >= 0 { out.append((name, Array(value[0..<m]))) }
        }
        return out.sorted { $0.0 < $1.0 }
    }

}
