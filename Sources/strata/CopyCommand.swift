import ArgumentParser
import FoundationEssentials
import StrataEngine
import StrataArchive
import StrataSystem

/// `cp`: files between a container (running or not) and the host, or a tar on standard input
/// or output (`-`), with Docker's rules for where they land (docs/copy.md).
struct Cp: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cp", abstract: "Copy files between a container and the host (CONTAINER:PATH; - for a tar on stdin or stdout).",
        discussion: """
            strata cp CONTAINER:SRC DEST      copy out (DEST - writes a tar to standard output)
            strata cp SRC CONTAINER:DEST      copy in (SRC - reads a tar from standard input)
            An existing directory DEST receives SRC by its name; SRC/. copies only what SRC holds.
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Keep owners (uid/gid), set-id bits and devices as they are.") var archive = false
    @Flag(name: [.customShort("L"), .long], help: "Follow a symbolic link SRC names.") var followLink = false
    @Argument(help: "CONTAINER:SRC, a host path, or -.", completion: NameCompletion.containers) var source: String
    @Argument(help: "CONTAINER:DEST, a host path, or -.") var destination: String

    /// `CONTAINER:PATH` as Docker splits it: a path that starts with / or . is the host's.
    static func split(_ arg: String) -> (container: String, path: String)? {
        guard !arg.hasPrefix("/"), !arg.hasPrefix("."), let colon = arg.firstIndex(of: ":"), colon != arg.startIndex else { return nil }
        return (String(arg[..<colon]), String(arg[arg.index(after: colon)...]))
    }

    func run() throws {
        try strata.run {
            switch (Cp.split(source), Cp.split(destination)) {
            case (let from?, nil):
                let engine = try global.openEngine()
                if destination == "-" {
                    if isTerminal(1) { throw StrataError(.invalidArgument, "refusing to write a tar to a terminal; redirect standard output") }
                    let out = BufferedOutput(try FDHandle.duplicating(1))
                    try engine.copyOut(from.container, path: from.path, followLink: followLink) { try out.write($0) }
                    try out.flush()
                    return
                }
                let report = try engine.copyOut(from.container, path: from.path, toHost: destination, archive: archive,
                                                followLink: followLink, owner: callerIDs)
                for d in report.skippedDevices {
                    writeStandardError("strata: note: device node \(d) not copied (-a copies devices)\n")
                }
            case (nil, let to?):
                let engine = try global.openEngine()
                if source == "-" {
                    try engine.copyIn(to.container, path: to.path, tar: try FDHandle.duplicating(0), archive: archive)
                } else {
                    try engine.copyIn(to.container, path: to.path, fromHost: source, archive: archive, followLink: followLink)
                }
            case (.some, .some):
                throw StrataError(.invalidArgument, "copying between containers is not supported; copy to the host first")
            case (nil, nil):
                throw StrataError(.invalidArgument, "one of SRC and DEST is CONTAINER:PATH (a host path with a colon: ./name:x)")
            }
        }
    }
}
