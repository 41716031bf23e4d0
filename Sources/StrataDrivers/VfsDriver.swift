import StrataCore
import StrataSystem
import StrataLayer

/// No union filesystem: each container gets a full copy of the flattened chain (layers applied
/// bottom first, whiteouts as deletions, opaque directories emptied). Slow, works everywhere,
/// and the reference the overlay driver is tested against.
public struct VfsDriver: UnionDriver {
    public let name = "vfs"
    /// The copying driver.
    public init() {}

    public func create(_ c: ContainerPaths, layers: [LowerLayer]) throws {
        for p in [c.root, c.rootfs] { try makeDirectory(p) }
        let target = try Directory.open(c.rootfs)
        for layer in visibleLayers(layers).reversed() {
            try OverlayFormApplier().apply(layer: try Directory.open(layer.path), onto: target)
        }
    }

    public func describe(_ c: ContainerPaths, layers: [LowerLayer]) throws -> MountDescription {
        .none(rootfs: c.rootfs)
    }

    public func mount(_ d: MountDescription) throws {}
    public func unmount(_ c: ContainerPaths) throws {}
    public func upperDirectory(_ c: ContainerPaths) -> String? { nil }
    public func essentialDirectories(_ c: ContainerPaths) -> [String] { [c.rootfs] }
    /// A copy is "mounted" while `mount` has it counted: nothing shows in the mount table.
    public func isMounted(_ c: ContainerPaths, recordedMounts: Int, mountPoints: Set<String>) -> Bool { recordedMounts > 0 }
    public var mountsAreKernelMounts: Bool { false }
    public var maxLowerLayers: Int? { nil }
    public var summary: String { "a full copy of the layers per container (no union filesystem)" }
}
