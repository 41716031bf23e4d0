import FoundationEssentials
import StrataCore

/// Media types strata reads (OCI image-spec media-types.md and Docker's image manifest v2).
public enum MediaType {
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let ociConfig = "application/vnd.oci.image.config.v1+json"
    public static let ociLayer = "application/vnd.oci.image.layer.v1.tar"
    public static let ociLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
    public static let ociLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let dockerConfig = "application/vnd.docker.container.image.v1+json"
    public static let dockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    public static let dockerLayer = "application/vnd.docker.image.rootfs.diff.tar"

    /// Whether a media type is an OCI index or a Docker manifest list.
    public static func isIndex(_ t: String?) -> Bool { t == ociIndex || t == dockerManifestList }
    /// Whether a media type is an OCI or Docker image manifest.
    public static func isManifest(_ t: String?) -> Bool { t == ociManifest || t == dockerManifest }
    /// Layer media types strata can unpack (foreign/non-distributable ones included: the bytes are local).
    public static func isLayer(_ t: String) -> Bool {
        t.hasPrefix("application/vnd.oci.image.layer.") || t.hasPrefix("application/vnd.docker.image.rootfs.")
    }
}

/// OCI image-spec descriptor.md: a typed, sized, content-addressed reference.
public struct Descriptor: Codable, Sendable {
    public var mediaType: String?
    public var digest: Digest
    public var size: Int64
    public var annotations: [String: String]?
    public var platform: Platform?

    /// A descriptor of `size` bytes of `digest`, of `mediaType`.
    public init(mediaType: String?, digest: Digest, size: Int64, annotations: [String: String]? = nil, platform: Platform? = nil) {
        self.mediaType = mediaType; self.digest = digest; self.size = size; self.annotations = annotations; self.platform = platform
    }

    /// Rejects sizes no blob can have (negative, or over `limit`).
    public func checkSize(limit: Int64, label: String) throws {
        guard size >= 0 else {
            throw StrataError(.invalidFormat, "\(label): descriptor \(digest) has a negative size \(size)")
        }
        guard size <= limit else {
            throw StrataError(.tooLarge, "\(label): descriptor \(digest) declares \(size) bytes, over the \(limit)-byte limit")
        }
    }
}

/// OCI image-spec image-index.md "platform".
public struct Platform: Codable, Sendable, Equatable, CustomStringConvertible {
    public var architecture: String
    public var os: String
    public var variant: String?

    enum CodingKeys: String, CodingKey { case architecture, os, variant }

    /// A platform as `os/architecture[/variant]` names it.
    public init(architecture: String, os: String, variant: String? = nil) {
        self.architecture = architecture
        self.os = os
        self.variant = variant
    }

    /// `os/arch[/variant]`, as `--platform` takes it.
    public init(parsing s: String) throws {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else {
            throw StrataError(.invalidArgument, "invalid platform \"\(s)\": expected os/arch[/variant], e.g. linux/amd64")
        }
        self.init(architecture: parts[1], os: parts[0], variant: parts.count == 3 ? parts[2] : nil)
    }

    /// linux and the architecture this process runs on, in Go's names.
    public static var host: Platform {
        #if arch(x86_64)
        return Platform(architecture: "amd64", os: "linux")
        #elseif arch(arm64)
        return Platform(architecture: "arm64", os: "linux", variant: "v8")
        #else
        return Platform(architecture: "unknown", os: "linux")
        #endif
    }

    /// Whether an image for `other` runs here when `self` was asked for (variant optional).
    public func matches(_ other: Platform) -> Bool {
        guard os == other.os, architecture == other.architecture else { return false }
        guard let v = variant, let ov = other.variant else { return true }
        return v == ov
    }

    public var description: String { [os, architecture, variant].compactMap { $0 }.joined(separator: "/") }
}

/// OCI image-spec manifest.md (also Docker's schema 2 manifest, which has the same shape).
public struct Manifest: Codable, Sendable {
    public var schemaVersion: Int?
    public var mediaType: String?
    public var config: Descriptor
    public var layers: [Descriptor]
    public var annotations: [String: String]?

    /// A manifest of `config` and `layers` (bottom first).
    public init(schemaVersion: Int? = 2, mediaType: String?, config: Descriptor, layers: [Descriptor], annotations: [String: String]? = nil) {
        self.schemaVersion = schemaVersion; self.mediaType = mediaType; self.config = config; self.layers = layers
        self.annotations = annotations
    }
}

/// OCI image-spec image-index.md (also Docker's manifest list).
public struct Index: Codable, Sendable {
    public var schemaVersion: Int?
    public var mediaType: String?
    public var manifests: [Descriptor]
    public var annotations: [String: String]?
}

/// OCI image-spec config.md: the parts strata reads. The config itself is kept as the verified
/// bytes; this is only a view of them.
public struct ImageConfig: Codable, Sendable {
    /// The config's `rootfs`: its layers' diffIDs, bottom first.
    public struct RootFS: Codable, Sendable {
        public var type: String
        public var diff_ids: [DiffID]
    }
    /// One entry of the config's `history` (empty layers included).
    public struct History: Codable, Sendable {
        public var created: String?
        public var created_by: String?
        public var author: String?
        public var comment: String?
        public var empty_layer: Bool?
    }
    /// config.md "config": the execution parameters (a subset; unknown keys are ignored).
    public struct Config: Codable, Sendable {
        public var User: String?
        public var Env: [String]?
        public var Entrypoint: [String]?
        public var Cmd: [String]?
        public var WorkingDir: String?
        public var Labels: [String: String]?
        public var StopSignal: String?
        public var ExposedPorts: [String: EmptyObject]?
        public var Volumes: [String: EmptyObject]?
        /// Docker's HEALTHCHECK (not in the OCI spec; Docker and podman write it).
        public var Healthcheck: Healthcheck?
        /// Docker's SHELL: the shell a build runs shell-form RUN, CMD and ENTRYPOINT with.
        public var Shell: [String]?
        /// Docker's ONBUILD: instructions a build that starts FROM this image runs first.
        public var OnBuild: [String]?
        /// An empty process config.
        public init() {}
    }
    /// The config's `Healthcheck`: `Test` is `["CMD", args…]`, `["CMD-SHELL", command]` or
    /// `["NONE"]` (empty: inherit); durations in nanoseconds (0: the default).
    public struct Healthcheck: Codable, Sendable, Equatable {
        public var Test: [String]?
        public var Interval: Int64?
        public var Timeout: Int64?
        public var StartPeriod: Int64?
        public var StartInterval: Int64?
        public var Retries: Int?
        public init(Test: [String]? = nil, Interval: Int64? = nil, Timeout: Int64? = nil, StartPeriod: Int64? = nil, Retries: Int? = nil) {
            self.Test = Test; self.Interval = Interval; self.Timeout = Timeout; self.StartPeriod = StartPeriod; self.Retries = Retries
        }
    }
    /// A JSON `{}` (the value type of `ExposedPorts` and `Volumes`).
    public struct EmptyObject: Codable, Sendable { public init() {} }

    public var created: String?
    public var author: String?
    public var architecture: String?
    public var os: String?
    public var variant: String?
    public var config: Config?
    public var rootfs: RootFS
    public var history: [History]?
}

/// docker-archive `manifest.json`: one entry per image (moby image/tarexport).
public struct DockerArchiveEntry: Codable, Sendable {
    public var Config: String
    public var RepoTags: [String]?
    public var Layers: [String]
}

/// Caps on JSON documents read from archives: a manifest or config larger than this is hostile.
public enum JSONLimits {
    public static let manifest = 4 << 20
    public static let config = 8 << 20
}

/// Decoding of JSON documents from outside: duplicate keys refused, errors that name the document.
public enum JSONDocument {
    /// Decodes `bytes` as `T`, naming `what` in the error.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], what: String) throws -> T {
        if let key = DuplicateKeys.find(in: bytes) {
            throw StrataError(.invalidFormat, "\(what): key \"\(key)\" appears twice; refused, since parsers disagree on which one counts")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let e as StrataError {
            throw e.context(what)
        } catch DecodingError.dataCorrupted(let ctx) {
            if let se = ctx.underlyingError as? StrataError { throw se.context(what) }
            throw StrataError(.invalidFormat, "\(what) is not valid JSON: \(ctx.debugDescription)")
        } catch DecodingError.keyNotFound(let key, let ctx) {
            throw StrataError(.invalidFormat, "\(what): missing \"\(path(ctx.codingPath + [key]))\"")
        } catch DecodingError.typeMismatch(_, let ctx) {
            throw StrataError(.invalidFormat, "\(what): wrong type at \"\(path(ctx.codingPath))\"")
        } catch DecodingError.valueNotFound(_, let ctx) {
            throw StrataError(.invalidFormat, "\(what): null at \"\(path(ctx.codingPath))\"")
        } catch {
            throw StrataError(.invalidFormat, "\(what) is not valid JSON", cause: error)
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}
