/// A file time: seconds since the epoch and nanoseconds (what `stat` reports, what a tar
/// header carries), as a value of its own so that no module outside StrataSystem needs the C
/// library's `timespec`.
public struct FileTime: Sendable, Hashable {
    public var seconds: Int64
    public var nanoseconds: Int
    public init(seconds: Int64, nanoseconds: Int = 0) { self.seconds = seconds; self.nanoseconds = nanoseconds }
}
