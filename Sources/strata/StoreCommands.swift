import ArgumentParser
import FoundationEssentials
import Logging
import StrataCore
import StrataFormats
import StrataArchive
import StrataLauncher
import StrataEngine
import StrataStore

struct GC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc", abstract: "Remove unused layers, unreferenced blobs and leftovers.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "JSON report.") var json = false
    func run() throws {
        try strata.run {
            let r = try global.openEngine().garbageCollect()
            if json { print(try Format.json(r)); return }
            let flattened = r.deletedFlattened.isEmpty ? "" : " \(r.deletedFlattened.count) flattened layers,"
            print("removed \(r.deletedLayers.count) layers,\(flattened) \(r.deletedBlobs.count) blobs, \(r.removedCgroups.count) cgroups, \(r.removedNetworks.count) container networks; \(Format.bytes(r.bytesFreed)) freed")
        }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check",
        abstract: "Check the store: layers against their tars, blobs against their digests, images, containers, leftovers.",
        discussion: """
            Prints one line per problem (what, what is wrong, what to do) and a summary; exits 1 on \
            any problem. --repair moves broken layers out of the way and removes the images that \
            use them, so the next load brings them back; images with containers are untagged and \
            kept (--force removes the containers).
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(name: .shortAndLong, help: "Also an ok line per layer.") var verbose = false
    @Flag(name: .long, help: "JSON: {problems: [{subject, problem, advice}], summary, repaired}.") var json = false
    @Flag(name: .long, help: "Mend what can be mended, then check again.") var repair = false
    @Flag(name: .long, help: "With --repair: also remove containers on what is broken.") var force = false

    struct Output: Encodable {
        var problems: [CheckProblem]
        var summary: CheckSummary
        var repaired: Store.RepairReport?
        var rebuilt: IndexRebuildReport?
    }

    func run() throws {
        try strata.run {
            var store: Store
            do { store = try global.openStore(forRepair: repair) } catch let e as StrataError where e.code == .storeDamaged && !repair {
                // Reported, not touched: only --repair changes a damaged store.
                let p = CheckProblem(subject: "database \(global.rootPath)/strata.db", problem: e.message, advice: "")
                if json { print(try Format.json(Output(problems: [p], summary: CheckSummary(), repaired: nil, rebuilt: nil))) } else { print("problem: \(p)") }
                throw ExitCode(1)
            }
            var rebuilt: IndexRebuildReport?
            var repair = self.repair
            if let why = store.indexProblem {
                let r = try store.rebuildIndex()
                rebuilt = r
                if !json {
                    print("repaired: rebuilt the database from the store's files (\(why)): \(r.layers) layers, \(r.images) images, \(r.tags) tags, \(r.containers) containers in \(String(format: "%.2f", r.seconds)) s")
                    for s in r.skipped { print("left: \(s)") }
                }
                store = try global.openStore()
                // What the rebuild could not record was moved aside; this run only reports what
                // is left, so nothing it just decided about is moved again.
                repair = false
            }
            let verbose = self.verbose && !json
            let engine = Engine(store: store)
            var summary = CheckSummary()
            var problems: [CheckProblem]
            var repaired: Store.RepairReport?
            if repair {
                // Mended in the same quiet view the problems were found in.
                let (found, r) = try engine.checkAndRepair(summary: &summary, force: force) { if verbose { print($0) } }
                problems = found
                if !problems.isEmpty {
                    repaired = r
                    if !json {
                        for p in problems { print("problem: \(p)") }
                        for a in r.actions { print("repaired: \(a)") }
                        for l in r.left { print("left: \(l)") }
                    }
                    problems = try engine.check(summary: &summary)
                }
            } else {
                problems = try engine.check(summary: &summary) { if verbose { print($0) } }
            }
            if json {
                print(try Format.json(Output(problems: problems, summary: summary, repaired: repaired, rebuilt: rebuilt)))
            } else {
                if repaired == nil || !problems.isEmpty { for p in problems { print("problem: \(p)") } }
                let what = "\(summary.layers) layers, \(summary.images) images, \(summary.blobs) blobs, \(summary.containers) containers, \(summary.volumes) volumes"
                print(problems.isEmpty ? "store is consistent: checked \(what)"
                                       : "\(problems.count) problem\(problems.count == 1 ? "" : "s") in \(what)")
            }
            if !problems.isEmpty { throw ExitCode(1) }
        }
    }
}
