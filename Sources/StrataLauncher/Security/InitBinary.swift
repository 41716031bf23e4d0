#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataCore
import StrataSystem

/// strata's helper programs (strata-init, strata-monitor): installed next to `strata`, or in
/// a libexec directory.
public enum HelperBinary {
    /// Where `name` is looked for, in order.
    public static func candidates(_ name: String) -> [String] {
        var out: [String] = []
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n > 0 {
            let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let slash = exe.lastIndex(of: "/") { out.append(String(exe[..<slash]) + "/" + name) }
        }
        return out + ["/usr/local/libexec/strata/" + name, "/usr/libexec/strata/" + name]
    }
}

/// strata-init, the program that is pid 1 with `--init`. It is installed next to `strata`
/// (or in a libexec directory) and copied into a sealed memfd for each container: pid 1's
/// `/proc/1/exe` is then a file nothing can write to, not the host's binary.
public enum InitBinary {
    /// Where it is looked for, in order.
    public static var candidates: [String] { HelperBinary.candidates("strata-init") }

    /// A sealed, close-on-exec memfd holding strata-init.
    public static func sealedCopy() throws -> FDHandle {
        for path in candidates {
            guard let src = try? FDHandle.open(path, flags: [.readOnly, .nonBlocking]), let st = try? src.stat(),
                  st.kind == .regular else { continue }
            let fd = strata_sealed_memfd_copy(src.fd, "strata-init")
            guard fd >= 0 else { throw StrataError.errno(.system, "cannot copy \(path) into a sealed memfd") }
            return FDHandle(owning: fd)
        }
        throw StrataError(.notFound, "--init needs strata-init, installed next to strata; looked in \(candidates.joined(separator: ", "))")
    }
}
