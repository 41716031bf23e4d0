// /proc/self/mountinfo as MountTable reads it (lines, optional fields, escaped mount points),
// and the cgroup layout and container view the launcher derives from it.
@testable import StrataLauncher
@testable import StrataSystem

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    for e in MountTable.entries(text) {
        precondition(!e.fsType.contains("\n") && !e.fsType.contains(" "), "fstype \(e.fsType) spans fields")
    }
    _ = MountTable.unescape(text)
    for controllers: Set<String> in [[], ["memory", "cpu", "pids"]] {
        if let layout = CgroupLayout.detect(mountinfo: text, controllers: { _ in controllers }) {
            _ = layout.containerView(mountinfo: text)
            _ = Cgroup(layout: layout, id: "0123456789ab", parent: "strata/0123456789ab").directories
        }
    }
    return 0
}
