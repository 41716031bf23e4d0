// Raw tar headers as HeaderTap hands them to RawTarHeader.parse: PAX (x, X, g) and GNU
// long-name (L, K) headers with their data, then the entry's own header block. Also the PAX
// record reader, the numeric fields and the %XX decoder on their own.
@testable import StrataArchive

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // Whole blocks, as the tap gives them (a partial block is refused before anything is read).
    var blocks = bytes
    let tail = blocks.count % 512
    if blocks.isEmpty || tail != 0 { blocks += [UInt8](repeating: 0, count: 512 - tail) }
    var globals: RawTarHeader.Globals = [:]
    if let h = try? RawTarHeader.parse(blocks, globals: &globals) {
        precondition(h.storedSize >= 0, "negative stored size \(h.storedSize)")
        // The next entry of the same archive sees the global records this one set.
        _ = try? RawTarHeader.parse(blocks, globals: &globals)
    }
    _ = try? RawTarHeader.parse(bytes, globals: &globals)
    _ = try? RawTarHeader.records(bytes)
    _ = RawTarHeader.percentDecoded(bytes)
    if bytes.count >= 12 { _ = try? RawTarHeader.number(bytes[...], 0, 12) }
    return 0
}
