import ArgumentParser
import FoundationEssentials
import StrataCore
import StrataFormats
import StrataLauncher
import StrataEngine
import StrataStore

struct Bundle: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bundle",
        abstract: "Write an OCI runtime bundle (config.json and rootfs) for an image or a container.",
        discussion: "`runc run -b DIR ID` runs it.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Image (tag, ID, prefix) or container (name, ID, prefix).") var source: String
    @Argument(help: "A new directory for the bundle.") var directory: String
    @Option(name: [.short, .long], help: "Memory limit, e.g. 64m.") var memory: String?
    @Option(name: .long, help: "CPU quota in CPUs.") var cpus: Double?
    @Option(name: .long, help: "Maximum number of processes.") var pidsLimit: Int64?

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            var options = Engine.RunOptions()
            options.limits = Limits(cpus: cpus, pids: pidsLimit ?? Limits.defaultPids)
            if let memory { options.limits.memory = try ByteSize.parse(memory, what: "--memory") }
            try Engine(store: store).writeBundle(of: source, to: directory, options: options)
            print(directory)
        }
    }
}
