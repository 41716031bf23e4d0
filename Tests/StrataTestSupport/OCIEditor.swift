import Foundation
import StrataCore

/// Edits a copy of an OCI layout to make broken or hostile variants: every change rewrites the
/// blobs above it (manifest, index) so that only the intended flaw remains.
public struct OCIEditor: Sendable {
    public let path: String

    /// Copies `source` (an OCI layout directory) to `dest`.
    public init(copying source: String, to dest: String) throws {
        try? FileManager.default.removeItem(atPath: dest)
        try FileManager.default.copyItem(atPath: source, toPath: dest)
        path = dest
    }

    public func blobPath(_ digest: String) -> String { path + "/blobs/sha256/" + digest.dropFirst(7) }

    public func readJSON(_ file: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as! [String: Any]
    }

    /// Writes `bytes` as a blob; returns its digest string.
    @discardableResult
    public func writeBlob(_ bytes: [UInt8]) throws -> String {
        let d = Digest.of(bytes).string
        try Data(bytes).write(to: URL(fileURLWithPath: blobPath(d)))
        return d
    }

    public var index: [String: Any] { get throws { try readJSON(path + "/index.json") } }

    public var manifestDigest: String { get throws { ((try index["manifests"] as! [[String: Any]])[0]["digest"] as! String) } }

    public var manifest: [String: Any] { get throws { try readJSON(blobPath(try manifestDigest)) } }

    public var config: [String: Any] {
        get throws { try readJSON(blobPath((try manifest["config"] as! [String: Any])["digest"] as! String)) }
    }

    /// Replaces the first image's manifest, updating index.json.
    public func setManifest(_ m: [String: Any]) throws {
        let bytes = Array(try JSONSerialization.data(withJSONObject: m, options: [.sortedKeys]))
        let d = try writeBlob(bytes)
        var idx = try index
        var list = idx["manifests"] as! [[String: Any]]
        list[0]["digest"] = d
        list[0]["size"] = bytes.count
        idx["manifests"] = list
        try Data(try JSONSerialization.data(withJSONObject: idx)).write(to: URL(fileURLWithPath: path + "/index.json"))
    }

    /// Replaces the config, updating the manifest and index.
    public func setConfig(_ c: [String: Any]) throws {
        let bytes = Array(try JSONSerialization.data(withJSONObject: c, options: [.sortedKeys]))
        let d = try writeBlob(bytes)
        var m = try manifest
        m["config"] = ["mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": bytes.count]
        try setManifest(m)
    }

    /// Replaces layer `i`'s blob with `bytes` (descriptor updated, config untouched).
    public func setLayer(_ i: Int, _ bytes: [UInt8]) throws {
        let d = try writeBlob(bytes)
        var m = try manifest
        var layers = m["layers"] as! [[String: Any]]
        layers[i]["digest"] = d
        layers[i]["size"] = bytes.count
        m["layers"] = layers
        try setManifest(m)
    }

    public func layerDigest(_ i: Int) throws -> String {
        ((try manifest["layers"] as! [[String: Any]])[i]["digest"] as! String)
    }
}
