import FoundationEssentials
import Synchronization
import StrataArchive
import StrataCore
import StrataFormats
import StrataLayer
import StrataSystem

extension Store {
    /// An image archive: a directory (OCI layout) or a tar file (read in place when it is
    /// uncompressed; spooled into tmp/, up to `limit` bytes, when it is compressed or a pipe).
    func openArchive(_ path: String, limit: Int64) throws -> any ArchiveContents {
        if path != "-" {
            let probe: FDHandle
            do { probe = try FDHandle.open(path, flags: [.readOnly, .nonBlocking]) } catch let e as StrataError {
                throw StrataError(.notFound, "cannot read \(path)", cause: e.cause)
            }
            if FileKind(mode: try probe.stat().mode) == .directory { return try DirectoryContents(path: path) }
        }
        let input = try openInput(path, decompressOuter: true, limit: limit)
        return try TarContents(handle: input.handle, size: input.size, label: path == "-" ? "standard input" : path)
    }

    /// A readable, seekable file for `path` (or standard input). With `decompressOuter`, a
    /// gzip/zstd/xz file is decompressed into an unnamed spool file first. Inputs that are not
    /// files, pipes or sockets (a terminal, /dev/zero, a disk) are refused before any byte is read.
    func openInput(_ path: String, decompressOuter: Bool, limit: Int64) throws -> InputFile {
        let label = path == "-" ? "standard input" : path
        let h: FDHandle
        if path == "-" {
            h = try FDHandle.duplicating(0)
        } else {
            do { h = try FDHandle.open(path, flags: .readOnly) } catch let e as StrataError {
                throw StrataError(.notFound, "cannot read \(path)", cause: e.cause)
            }
        }
        let st = try h.stat()
        switch st.kind {
        case .regular:
            if st.size == 0 { throw StrataError(.invalidFormat, "\(label) is empty, not an archive") }
            let file = InputFile(handle: h, size: Int64(st.size), label: label)
            if decompressOuter {
                let probe = try Decompressor(file.source(), label: label)
                if probe.compression != .none { return try spool(probe, label: label, limit: limit, decompressed: true) }
            }
            return file
        case .fifo, .socket:
            let stream = StreamSource(handle: h)
            return try spool(decompressOuter ? try Decompressor(stream, label: label) : stream, label: label,
                             limit: limit, decompressed: decompressOuter)
        case .directory:
            throw StrataError(.invalidArgument, "\(label) is a directory; give a tar file")
        default:
            throw StrataError(.invalidArgument, "\(label) is a device, not an archive; give a file or a pipe")
        }
    }

    /// Copies a stream into an O_TMPFILE file in tmp/: it has no name, so a killed run leaves
    /// nothing. Stops as soon as it passes `limit` or the free space of the store's filesystem
    /// less a reserve (so a bomb never fills the disk), naming the archive.
    func spool(_ source: any ChunkSource, label: String, limit: Int64, decompressed: Bool) throws -> InputFile {
        let h = try spoolFile()
        let room = spoolRoom()
        let cap = min(limit, room.room)
        var size: Int64 = 0
        while true {
            let c = try source.nextChunk()
            if c.isEmpty { break }
            size += Int64(c.count)
            if size > cap {
                let what = decompressed ? "decompressed" : "read from the pipe"
                if cap == limit {
                    throw StrataError(.tooLarge, "\(label): more than \(ByteCount.describe(limit)) \(what), over --max-archive-size (four times --max-layer-size unless given); raise it if the archive is that large")
                }
                throw StrataError(.tooLarge, "\(label): more than \(ByteCount.describe(cap)) \(what), all the room left in \(rootPath)/tmp (the filesystem keeps a reserve of \(ByteCount.describe(Store.spoolReserve(free: room.free))))")
            }
            do { try h.writeAll(c) } catch let e as StrataError where e.isNoSpace {
                throw StrataError(.system, "\(label): no space left on the device of \(rootPath)/tmp while spooling the archive (\(ByteCount.describe(size)) written)")
            }
        }
        return InputFile(handle: h, size: size, label: label)
    }

    /// What a spool may use: the free space of tmp/'s filesystem less the reserve.
    func spoolRoom() -> (room: Int64, free: Int64) {
        guard let free = try? tmpDir.handle.freeBytes() else { return (.max, .max) }
        return (max(0, free - Store.spoolReserve(free: free)), free)
    }

    /// Space a spool leaves free on the store's filesystem: an eighth of what is free, from
    /// 16 MiB to 512 MiB. A bomb still stops short of filling the disk, and a small archive
    /// loads on a nearly full one (a fixed 512 MiB refused any pipe with less than that free).
    static func spoolReserve(free: Int64) -> Int64 { min(512 << 20, max(16 << 20, free / 8)) }
}
