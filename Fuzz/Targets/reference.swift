// Image references as users and archives give them: ImageReference's Docker grammar, the
// short normalization of tags, bare tags, registry hosts, platforms and digests.
import StrataCore
@testable import StrataFormats

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let r = try? ImageReference(parsing: text) {
        // What a reference prints parses back to the same reference.
        guard let again = try? ImageReference(parsing: r.description) else {
            preconditionFailure("\(r.description) (from \(text)) does not parse")
        }
        precondition(again == r, "\(r.description) parses as \(again.description)")
        _ = r.shortForms
        _ = r.manifestReference
    }
    if let n = try? Reference.normalize(text) {
        precondition((try? Reference.normalize(n)) == n, "normalizing \(n) again changes it")
    }
    _ = Reference.isBareTag(text)
    _ = Reference.tags(fromAnnotations: ["io.containerd.image.name": text])
    _ = Reference.tags(fromAnnotations: ["org.opencontainers.image.ref.name": text])
    _ = try? ImageReference.registryHost(text)
    _ = try? Platform(parsing: text)
    _ = try? Digest(parsing: text)
    return 0
}
