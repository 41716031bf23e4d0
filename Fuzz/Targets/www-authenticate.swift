// A registry's WWW-Authenticate header (`Bearer realm="…",service="…",scope="…"`, `Basic …`)
// as RegistryClient reads it, and the escaping of the values it puts into the token URL.
@testable import StrataRegistry

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let header = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let (scheme, params) = RegistryClient.parseChallenge(header)
    precondition(!scheme.utf8.contains(UInt8(ascii: " ")), "scheme \"\(scheme)\" has a space")
    for (_, value) in params {
        let escaped = RegistryClient.escape(value)
        precondition(escaped.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "&") }, "\(escaped) is not escaped")
    }
    _ = RegistryClient.redact(header)
    return 0
}
