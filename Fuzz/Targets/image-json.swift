// The JSON documents of images: config, manifest, index and docker-archive manifest.json, each
// read as JSONDocument.decode reads it (the duplicate-key scan first). Then the docker-archive
// reader end to end, over an archive in memory: the input up to its first NUL byte is
// manifest.json, the rest is the file it names as the config.
#if canImport(Glibc)
import Glibc
#endif
import CStrata
import StrataCore
import StrataSystem
@testable import StrataFormats

/// Two files in a memfd: manifest.json, and whatever else is opened (the config, the layers).
final class MemoryArchive: ArchiveContents, Sendable {
    let label = "fuzz.tar"
    let handle: FDHandle
    let manifestSize: Int64
    let restSize: Int64

    init?(_ manifest: ArraySlice<UInt8>, _ rest: ArraySlice<UInt8>) {
        let fd = strata_memfd("fuzz-archive")
        guard fd >= 0 else { return nil }
        handle = FDHandle(owning: fd)
        manifestSize = Int64(manifest.count)
        restSize = Int64(rest.count)
        guard (try? handle.writeAll(Array(manifest) + Array(rest))) != nil else { return nil }
    }

    func open(_ path: String) throws -> BlobRef {
        switch path {
        case "manifest.json": return BlobRef(handle: handle, offset: 0, size: manifestSize, label: "\(label):\(path)")
        case "version", "index.json": throw StrataError(.notFound, "\(label): no \(path)")
        default: return BlobRef(handle: handle, offset: manifestSize, size: restSize, label: "\(label):\(path)")
        }
    }

    func exists(_ path: String) -> Bool { (try? open(path)) != nil }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = DuplicateKeys.find(in: bytes)
    _ = try? JSONDocument.decode(ImageConfig.self, from: bytes, what: "config")
    if let m = try? JSONDocument.decode(Manifest.self, from: bytes, what: "manifest") {
        for d in [m.config] + m.layers {
            _ = try? d.checkSize(limit: Int64(JSONLimits.config), label: "manifest")
            _ = d.mediaType.map(MediaType.isLayer)
        }
    }
    if let index = try? JSONDocument.decode(Index.self, from: bytes, what: "index") {
        for d in index.manifests {
            _ = Reference.tags(fromAnnotations: d.annotations)
            _ = d.platform.map(Platform.host.matches)
        }
    }
    if let entries = try? JSONDocument.decode([DockerArchiveEntry].self, from: bytes, what: "manifest.json") {
        for e in entries {
            _ = ImageArchiveReader.digestNamed(by: e.Config)
            for l in e.Layers { _ = ImageArchiveReader.blobDigestNamed(by: l) }
        }
    }
    let nul = bytes.firstIndex(of: 0) ?? bytes.endIndex
    let rest = nul < bytes.endIndex ? bytes[(nul + 1)...] : []
    if let archive = MemoryArchive(bytes[..<nul], rest),
       let reader = try? ImageArchiveReader(contents: archive, platform: .host, maxLayers: 50) {
        _ = try? reader.images()
    }
    return 0
}
