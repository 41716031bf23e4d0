#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import CStrata
import Dispatch
import FoundationEssentials
import StrataCore
import StrataSystem

enum Terminal {
    /// Puts a terminal in raw mode; returns the settings to restore (nil when not a terminal).
    static func makeRaw(_ fd: Int32) -> termios? {
        guard isatty(fd) != 0 else { return nil }
        var t = termios()
        guard tcgetattr(fd, &t) == 0 else { return nil }
        let saved = t
        cfmakeraw(&t)
        tcsetattr(fd, TCSANOW, &t)
        return saved
    }

    /// Copies stdin → master (when interactive) and master → stdout on two threads; the
    /// semaphore is signalled when the output side is done.
    static func relay(master: Int32, interactive: Bool) -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        if interactive {
            DetachedThread.start {
                var buf = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = read(0, &buf, buf.count)
                    if n <= 0 { break }
                    _ = buf.withUnsafeBytes { write(master, $0.baseAddress, n) }
                }
            }
        }
        DetachedThread.start {
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(master, &buf, buf.count)
                if n <= 0 { break }
                _ = buf.withUnsafeBytes { write(1, $0.baseAddress, n) }
            }
            done.signal()
        }
        return done
    }
}
