import StrataCore
import StrataSystem
import Synchronization

/// Whiteouts in their two forms (docs/unpack-decisions.md): in a layer tar (OCI/aufs names) and
/// on disk in an overlay lower or upper dir (a 0/0 character device; an opaque xattr).
public enum Whiteout {
    public static let prefix: PathBytes = Array(".wh.".utf8)
    /// `dir/.wh..wh..opq`: nothing below shows through `dir`.
    public static let opaqueMarker: PathBytes = Array(".wh..wh..opq".utf8)
    /// Names with this prefix other than the opaque marker are aufs internals, not content.
    public static let aufsMetaPrefix: PathBytes = Array(".wh..wh.".utf8)

    /// The xattr that makes an overlay directory opaque, and its value: `trusted.overlay.opaque`
    /// as root; rootless, where trusted.* is out of reach, `user.overlay.opaque` (overlay's
    /// `userxattr`, which fuse-overlayfs reads too; docs/rootless.md).
    public static let overlayOpaqueXattr = UserNamespace.current.isRootless ? "user.overlay.opaque" : "trusted.overlay.opaque"
    public static let overlayOpaqueValue: [UInt8] = [UInt8(ascii: "y")]
    /// What fuse-overlayfs writes in an upper dir when it cannot write trusted.*.
    public static let fuseOverlayOpaqueXattr = "user.fuseoverlayfs.opaque"

    /// On disk, in overlay form: a character device 0/0 is a whiteout.
    public static func isOverlayWhiteout(_ st: FileStatus) -> Bool { st.kind == .characterDevice && st.rdev == 0 }

    /// On disk, in overlay form: whether the directory is opaque (its xattr is exactly "y").
    public static func isOpaque(_ dir: Directory) -> Bool {
        if dir.handle.xattr(overlayOpaqueXattr, limit: 16) == overlayOpaqueValue { return true }
        return readsFuseOverlayMarkers.load(ordering: .relaxed) && dir.handle.xattr(fuseOverlayOpaqueXattr, limit: 16) == overlayOpaqueValue
    }

    /// Set by a store whose driver is fuse-overlayfs: its upper dirs' markers are read as such.
    /// Anywhere else they are a container's own xattrs and names (a container may set
    /// `user.fuseoverlayfs.opaque` on its files; it must not make its commit drop them).
    public static let readsFuseOverlayMarkers = Atomic<Bool>(false)

    /// fuse-overlayfs marks a directory opaque in its upper dir three ways at once: the xattr,
    /// an empty `.wh..wh..opq` file and a 0/0 device named `.wh..opq`. The two names are its own
    /// bookkeeping, not the container's files (it hides `.wh.` names from the container), read
    /// as such only in a directory that is opaque, rootless.
    public static func isFuseOverlayMarker(_ name: PathBytes, _ st: FileStatus, inOpaqueDirectory: Bool) -> Bool {
        guard inOpaqueDirectory, readsFuseOverlayMarkers.load(ordering: .relaxed) else { return false }
        if name == opaqueMarker { return st.kind == .regular && st.size == 0 }
        return name == Array(".wh..opq".utf8) && isOverlayWhiteout(st)
    }

    /// What a tar entry's final name component means.
    public enum Meaning: Equatable {
        case content
        /// `.wh..wh..opq`
        case opaque
        /// `.wh..wh.*` other than the opaque marker: skipped.
        case aufsMeta
        /// `.wh.NAME`: NAME is deleted from the layers below.
        case whiteout(PathBytes)
        /// `.wh.`, `.wh..`, `.wh...`: names nothing or a parent: refused.
        case invalid
    }

    /// What a name means in a layer tar: content, a whiteout of a sibling, an opaque marker, aufs metadata, or invalid.
    public static func meaning(of name: PathBytes) -> Meaning {
        guard name.starts(with: prefix) else { return .content }
        if name == opaqueMarker { return .opaque }
        if name.starts(with: aufsMetaPrefix) { return .aufsMeta }
        let target = Array(name.dropFirst(prefix.count))
        if target.isEmpty || target == [UInt8(ascii: ".")] || target == [UInt8(ascii: "."), UInt8(ascii: ".")] {
            return .invalid
        }
        return .whiteout(target)
    }

    /// Content xattrs kept in layers (docs/unpack-decisions.md, decision 7): `security.capability`, `user.*` and
    /// other `security.*` except `security.selinux`; never overlay's or fuse-overlayfs's own.
    public static func isContentXattr(_ name: String) -> Bool {
        // Storage drivers' own: overlay and fuse-overlayfs state, containers/storage's
        // `user.containers.override_stat` and the rest of its namespace.
        if name.hasPrefix("user.overlay.") || name.hasPrefix("user.fuseoverlayfs.") || name.hasPrefix("user.containers.") { return false }
        if name.hasPrefix("user.") { return true }
        if name == "security.selinux" { return false }
        if name.hasPrefix("security.") { return true }
        return false
    }
}
