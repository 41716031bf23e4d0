#if canImport(Glibc)
import Glibc
#endif
import CStrata

/// A detached thread of its own for long, blocking work (a hashing stage waiting on
/// semaphores): not a pool thread, which such work would starve.
public enum DetachedThread {
    private final class Box { let body: () -> Void; init(_ body: @escaping () -> Void) { self.body = body } }

    /// Runs `body` on a new detached thread.
    public static func start(_ body: @escaping () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        if rc != 0 {
            // No thread to be had (the process is at its limit): run it here rather than lose it.
            Unmanaged<Box>.fromOpaque(box).takeRetainedValue().body()
            return
        }
        pthread_detach(thread)
    }
}

/// The bytes of a NUL-terminated C string, without the NUL.
public func cStringBytes(_ c: UnsafePointer<CChar>) -> [UInt8] {
    Array(UnsafeRawBufferPointer(start: c, count: strlen(c)))
}

/// The calling thread switched to the C.UTF-8 locale while this value lives (libarchive
/// converts names through the locale's charset; C.UTF-8 converts UTF-8 names without loss),
/// then back to what it had. Other threads are not touched. Create and drop it on one thread.
public final class UTF8ThreadLocale {
    private let previous: UnsafeMutableRawPointer?
    public init() { previous = strata_use_utf8_locale() }
    deinit { strata_restore_locale(previous) }
}
