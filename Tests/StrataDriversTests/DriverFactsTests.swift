import Testing
@testable import StrataCore
@testable import StrataDrivers

/// The store asks a driver what a mount is, which directories a container needs and how many
/// layers one mount takes; it never decides by the driver's name. Values, no root.
@Suite struct DriverFactsTests {
    static let paths = ContainerPaths(root: "/s/containers/c1")
    static let overlay = OverlayDriver(linkDirectory: "/s/l", useLowerdirPlus: true)

    @Test func overlayMountsAreKernelMounts() {
        let d = DriverFactsTests.overlay, p = DriverFactsTests.paths
        #expect(d.isMounted(p, recordedMounts: 0, mountPoints: [p.merged]))
        #expect(!d.isMounted(p, recordedMounts: 3, mountPoints: ["/elsewhere"]), "a count without a mount is stale")
        #expect(d.mountsAreKernelMounts)
        #expect(d.essentialDirectories(p) == [p.upper, p.work])
        #expect(d.maxLowerLayers == OverlayDriver.maxLowerLayers)
    }

    @Test func vfsCopiesAreMountedWhileCounted() {
        let d = VfsDriver(), p = DriverFactsTests.paths
        #expect(d.isMounted(p, recordedMounts: 1, mountPoints: []))
        #expect(!d.isMounted(p, recordedMounts: 0, mountPoints: [p.merged]))
        #expect(!d.mountsAreKernelMounts)
        #expect(d.essentialDirectories(p) == [p.rootfs])
        #expect(d.maxLowerLayers == nil)
    }

    @Test func describeNamesLayersTopFirst() throws {
        let layers = (0..<3).map { i in
            LowerLayer(chainID: ChainID(Digest.of(Array("layer \(i)".utf8))), path: "/s/layers/\(i)/diff", link: "\(i)", opaqueRoot: i == 1)
        }
        // The layer with an opaque root hides what lies below it: layer 2 does not show.
        guard case .overlay(let lowers, let upper, let work, let target) = try DriverFactsTests.overlay.describe(DriverFactsTests.paths, layers: layers) else {
            Issue.record("the new mount API form was expected")
            return
        }
        #expect(lowers == ["/s/layers/0/diff", "/s/layers/1/diff"])
        #expect(upper == DriverFactsTests.paths.upper && work == DriverFactsTests.paths.work && target == DriverFactsTests.paths.merged)
        #expect(try VfsDriver().describe(DriverFactsTests.paths, layers: layers) == .none(rootfs: DriverFactsTests.paths.rootfs))
    }
}
