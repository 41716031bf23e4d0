/// Sizes for people, as Docker prints them: SI units, three significant digits (`1.98MB`,
/// `27.1GB`, `512B`).
public enum ByteCount {
    /// A byte count as people read it ("2.1MB"), in powers of 1000 as Docker prints sizes.
    public static func describe(_ n: Int64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
        var v = Double(n)
        var u = 0
        while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
        if u == 0 { return "\(n)B" }
        let decimals = v < 10 ? 2 : v < 100 ? 1 : 0
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let rounded = Int64((v * scale).rounded())
        let whole = rounded / Int64(scale), frac = rounded % Int64(scale)
        guard decimals > 0 else { return "\(whole)\(units[u])" }
        let fracText = String(frac)
        return "\(whole).\(String(repeating: "0", count: decimals - fracText.count))\(fracText)\(units[u])"
    }
}

extension Int64 {
    /// `self + other`, held at Int64.max instead of trapping: for sums of sizes a container
    /// controls (a 16 TiB sparse file linked a million times).
    public func addingSaturating(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }
}
