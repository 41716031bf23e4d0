import StrataCore
import StrataSystem

/// fuse-overlayfs: overlay in user space, for a user namespace where the kernel's overlay
/// cannot be mounted (docs/rootless.md). The same directories as the kernel driver (layers as
/// lower dirs, an upper and a work dir per container), read in the same overlay form: 0/0
/// whiteouts and opaque xattrs (`user.overlay.opaque` in layers; it writes
/// `user.fuseoverlayfs.opaque` in the upper dir, which commit reads too).
public struct FuseOverlayDriver: UnionDriver {
    public let name = "fuse-overlayfs"
    public init() {}

    public func essentialDirectories(_ c: ContainerPaths) -> [String] { [c.upper, c.work] }
    public func isMounted(_ c: ContainerPaths, recordedMounts: Int, mountPoints: Set<String>) -> Bool { mountPoints.contains(c.merged) }
    public var mountsAreKernelMounts: Bool { true }
    public var maxLowerLayers: Int? { OverlayDriver.maxLowerLayers }
    public var summary: String { "fuse-overlayfs: layers shared, each container's changes in its upper dir, in user space" }

    public func create(_ c: ContainerPaths, layers: [LowerLayer]) throws {
        for p in [c.root, c.upper, c.work, c.merged] { try makeDirectory(p) }
    }

    public func describe(_ c: ContainerPaths, layers: [LowerLayer]) throws -> MountDescription {
        let lowers = try stackedLayers(layers, driver: name)
        return .fuseOverlay(lowers: lowers.map(\.path), upper: c.upper, work: c.work, target: c.merged)
    }

    public func mount(_ d: MountDescription) throws {
        guard case .fuseOverlay(let lowers, let upper, let work, let target) = d else { return }
        try Mounts.fuseOverlay(target: target, lowers: lowers, upper: upper, work: work)
    }

    /// Detached: the daemon ends once the kernel lets go of the mount.
    public func unmount(_ c: ContainerPaths) throws { try Mounts.unmount(c.merged, detach: true) }

    public func upperDirectory(_ c: ContainerPaths) -> String? { c.upper }

    /// Whether fuse-overlayfs works here: installed, /dev/fuse usable, and a scratch mount in
    /// `scratch` shows its lower dir. Returns nil when it works, else why not.
    public static func probe(scratch: String) -> String? {
        guard Mounts.fuseOverlayProgram != nil else { return "fuse-overlayfs is not installed (Debian: apt-get install fuse-overlayfs)" }
        guard isReadableAndWritable("/dev/fuse") else { return "/dev/fuse cannot be opened by this user (it is normally mode 0666)" }
        return probeScratchMount(scratch, what: "a scratch fuse-overlayfs") { lower, upper, work, merged in
            try Mounts.fuseOverlay(target: merged, lowers: [lower], upper: upper, work: work)
        }
    }
}
