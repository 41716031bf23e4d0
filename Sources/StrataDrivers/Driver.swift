import StrataCore
import StrataSystem

/// A layer as a union driver sees it: a directory in overlay form.
public struct LowerLayer: Sendable, Equatable {
    public var chainID: ChainID
    /// Absolute path of the layer's files (ROOT/layers/CACHEID/diff).
    public var path: String
    /// The short link name under ROOT/l, for the page-size-limited mount form.
    public var link: String
    /// `.wh..wh..opq` at its root: nothing below it shows.
    public var opaqueRoot: Bool

    /// A lower layer: its chainID, its directory, its short link name, whether it hides all below.
    public init(chainID: ChainID, path: String, link: String, opaqueRoot: Bool) {
        self.chainID = chainID; self.path = path; self.link = link; self.opaqueRoot = opaqueRoot
    }
}

/// A container's directories (ROOT/containers/ID/...).
public struct ContainerPaths: Sendable, Equatable {
    public var root: String
    public var upper: String { root + "/upper" }
    public var work: String { root + "/work" }
    public var merged: String { root + "/merged" }
    /// The vfs driver's full copy.
    public var rootfs: String { root + "/rootfs" }
    /// The paths of the container directory `root`.
    public init(root: String) { self.root = root }
}

/// What to mount, as a value: computed from metadata without privileges (testable), performed
/// separately (docs/code-patterns.md).
public enum MountDescription: Sendable, Equatable {
    /// overlayfs with the new mount API: one `lowerdir+` per layer, top first.
    case overlay(lowers: [String], upper: String, work: String, target: String)
    /// overlayfs with mount(2) and one page of options: run from `directory` (ROOT/l) so that
    /// lower dirs are short relative links.
    case overlayShortLinks(directory: String, options: String, target: String)
    /// fuse-overlayfs, lower dirs top first.
    case fuseOverlay(lowers: [String], upper: String, work: String, target: String)
    /// Nothing to mount: the rootfs is a plain directory.
    case none(rootfs: String)

    public var target: String {
        switch self {
        case .overlay(_, _, _, let t), .overlayShortLinks(_, _, let t), .fuseOverlay(_, _, _, let t): return t
        case .none(let r): return r
        }
    }
}

/// A union driver: how a container's rootfs is built from an image's layers.
public protocol UnionDriver: Sendable {
    var name: String { get }
    /// Creates the container's private directories (upper and work, or a full copy).
    /// `layers` is the image's chain, top first.
    func create(_ c: ContainerPaths, layers: [LowerLayer]) throws
    /// The mount for a container, as a value.
    func describe(_ c: ContainerPaths, layers: [LowerLayer]) throws -> MountDescription
    func mount(_ d: MountDescription) throws
    func unmount(_ c: ContainerPaths) throws
    /// The directory holding what the container changed, in overlay form (whiteouts as 0/0
    /// devices, opaque xattrs), or nil when changes must be computed against the layers.
    func upperDirectory(_ c: ContainerPaths) -> String?
    /// The directories a container cannot do without (`check` reports one that is gone).
    func essentialDirectories(_ c: ContainerPaths) -> [String]
    /// Whether a container's rootfs is mounted, from the mount table (read once by the caller)
    /// and the count of `mount`s the store recorded for it.
    func isMounted(_ c: ContainerPaths, recordedMounts: Int, mountPoints: Set<String>) -> Bool
    /// Whether its mounts are kernel mounts: a recorded count without one in the mount table
    /// is stale (a killed run left it) and is reset.
    var mountsAreKernelMounts: Bool { get }
    /// At most this many lower layers in one mount (deeper chains are flattened at the bottom);
    /// nil when there is no limit.
    var maxLowerLayers: Int? { get }
    /// What it does, in a few words (`info`).
    var summary: String { get }
}

/// The layers that show in a merged view: top first, cut below a layer with a root opaque
/// marker (the kernel ignores the opaque xattr on a lower layer's root: Decision 5).
public func visibleLayers(_ layers: [LowerLayer]) -> [LowerLayer] {
    var out: [LowerLayer] = []
    for l in layers {
        out.append(l)
        if l.opaqueRoot { break }
    }
    return out
}
