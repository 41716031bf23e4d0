import Foundation
import StrataCore
import StrataFormats

/// Writes OCI image layouts for tests: the given layer tars (as they are, any compression) under
/// a config that lists their diffIDs, tagged `ref`.
public enum ImageLayout {
    /// `diffIDs` for compressed blobs (the digests of their uncompressed tars); by default each
    /// blob is its own diffID (uncompressed). `config` keys are added to the generated config;
    /// `rawConfig` replaces it (bytes as given, e.g. with a duplicate key).
    public static func write(_ dir: String, layers: [[UInt8]], diffIDs: [String]? = nil, ref: String = "test",
                      config: [String: Any] = [:], rawConfig: [UInt8]? = nil, rawManifest: ((String, Int) -> [UInt8])? = nil) throws {
        try FileManager.default.createDirectory(atPath: dir + "/blobs/sha256", withIntermediateDirectories: true)
        func put(_ bytes: [UInt8]) throws -> (String, Int) {
            let d = Digest.of(bytes)
            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/blobs/sha256/" + d.hex))
            return (d.string, bytes.count)
        }
        var descriptors: [[String: Any]] = []
        for l in layers {
            let (d, n) = try put(l)
            descriptors.append(["mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n])
        }
        var doc: [String: Any] = ["architecture": Platform.host.architecture, "os": "linux", "config": [:] as [String: Any],
                                  "rootfs": ["type": "layers", "diff_ids": diffIDs ?? descriptors.map { $0["digest"] as! String }]]
        for (k, v) in config { doc[k] = v }
        let (cd, cn) = try put(rawConfig ?? Array(try JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys])))
        let manifest: [String: Any] = ["schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                       "config": ["mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn],
                                       "layers": descriptors]
        let (md, mn) = try put(rawManifest?(cd, cn) ?? Array(try JSONSerialization.data(withJSONObject: manifest, options: [.sortedKeys])))
        let index: [String: Any] = ["schemaVersion": 2, "manifests": [["mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                                       "digest": md, "size": mn,
                                                                       "annotations": ["org.opencontainers.image.ref.name": ref]]]]
        try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: dir + "/index.json"))
        try Data(#"{"imageLayoutVersion": "1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: dir + "/oci-layout"))
    }
}
