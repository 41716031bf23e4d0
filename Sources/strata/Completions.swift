import ArgumentParser
import FoundationEssentials
import Logging
import StrataEngine
import StrataStore
import StrataSystem

/// What the shell completion scripts (`--generate-completion-script`) offer for arguments that
/// name a container or an image: the names in the store the command line names (`--root`, else
/// `STRATA_ROOT`, else the default). A store that does not exist is not made.
enum NameCompletion {
    static let containers = CompletionKind.custom { words, _, prefix in
        names(words, prefix) { store in try store.containers(all: true).flatMap { [$0.record.name, String($0.record.id.prefix(12))] } }
    }
    static let images = CompletionKind.custom { words, _, prefix in
        names(words, prefix) { store in try store.images().flatMap { $0.tags.isEmpty ? [String($0.id.string.dropFirst(7).prefix(12))] : $0.tags } }
    }

    private static func names(_ words: [String], _ prefix: String, _ list: (Store) throws -> [String]) -> [String] {
        var root = ProcessInfo.processInfo.environment["STRATA_ROOT"] ?? Store.defaultRoot
        for (i, w) in words.enumerated() {
            if w == "--root", i + 1 < words.count { root = words[i + 1] }
            if w.hasPrefix("--root=") { root = String(w.dropFirst(7)) }
        }
        guard pathExists(root + "/strata.db"),
              let store = try? Store(root: root, driver: nil, overlayShortLinks: false, logger: Logger(label: "strata.completion") { _ in SwiftLogNoOpLogHandler() }, forRepair: false),
              let all = try? list(store) else { return [] }
        return all.filter { $0.hasPrefix(prefix) }.sorted()
    }
}
