import StrataCore
import StrataSystem

/// Per-layer leases between strata processes (and threads): a load holds a shared lease on
/// every layer it reuses and an exclusive one on every layer it creates, until its transaction
/// is committed; rmi and gc free only layers whose exclusive lease they get without waiting.
///
/// A lease is an open-file-description lock on one byte of ROOT/lock, at an offset taken from
/// the chainID: no lock files to create or clean up (the store's files stay as they were), and
/// released by the kernel when a process dies. Leases are taken in offset order, so two loads
/// never deadlock; two layers sharing an offset (1 in 2^62) only make one wait for the other.
package final class LayerLocks {
    private let file: FDHandle
    private var held: [Int64: Bool] = [:]

    /// Leases on `store`'s layers, through an OFD-lock descriptor of its own.
    package init(store: Store) throws {
        // Its own open file description: OFD locks exclude each other even within one process.
        file = try store.root.openFile(Array("lock".utf8), flags: [.readWrite, .create], mode: 0o600)
    }

    /// The byte a layer's lease is on.
    package static func offset(_ c: ChainID) -> Int64 { offset(hex: c.digest.hex) }

    /// The byte for a lease named by lowercase hex (a chainID's or a container ID's).
    package static func offset(hex: String) -> Int64 {
        var v: UInt64 = 0
        for ch in hex.utf8.prefix(15) {
            let d: UInt8 = ch <= 0x39 ? ch &- 0x30 : ch &- 0x61 &+ 10
            v = v << 4 | UInt64(d & 0xf)
        }
        return Int64(v >> 2) + 4096
    }

    /// A lease on something else named by hex (a container), same rules.
    package func lock(key hex: String, exclusive: Bool) throws {
        _ = try take(LayerLocks.offset(hex: hex), exclusive: exclusive, wait: true, what: hex)
    }

    /// Takes the exclusive lease on something named by hex only if nobody holds it.
    package func tryExclusive(key hex: String) throws -> Bool {
        try take(LayerLocks.offset(hex: hex), exclusive: true, wait: false, what: hex)
    }

    /// Waits for the lease.
    package func lock(_ c: ChainID, exclusive: Bool) throws {
        _ = try take(LayerLocks.offset(c), exclusive: exclusive, wait: true, what: "layer \(c)")
    }

    /// Lets go of the lease on a layer.
    package func unlock(_ c: ChainID) {
        let off = LayerLocks.offset(c)
        file.unlockRange(off)
        held[off] = nil
    }

    /// Takes the exclusive lease only if nobody holds the layer.
    package func tryExclusive(_ c: ChainID) throws -> Bool {
        try take(LayerLocks.offset(c), exclusive: true, wait: false, what: "layer \(c)")
    }

    /// The lease on byte `off`; false when `wait` is false and someone else holds it.
    private func take(_ off: Int64, exclusive: Bool, wait: Bool, what: String) throws -> Bool {
        do {
            guard try file.lockRange(off, exclusive: exclusive, wait: wait) else { return false }
        } catch let e as StrataError {
            throw e.context("cannot take the lease on \(what)")
        }
        held[off] = exclusive
        return true
    }

    /// Lets go of every lease held.
    package func unlockAll() {
        for off in held.keys { file.unlockRange(off) }
        held = [:]
    }

    deinit { unlockAll() }
}
