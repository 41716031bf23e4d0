import ArgumentParser
import FoundationEssentials
import StrataEngine
import StrataRegistry
import StrataSystem
import StrataArchive

/// Flags every command that talks to a registry takes (podman's names).
struct RegistryFlags: ParsableArguments {
    @Option(name: .long, help: "Verify the registry's TLS certificate; false also allows plain http.") var tlsVerify: Bool = true
    @Option(name: .long, help: ArgumentHelp("A directory with ca.crt, client.cert and client.key.", valueName: "DIR")) var certDir: String?
    @Option(name: .long, help: ArgumentHelp("Credentials for the registry (instead of the stored ones).", valueName: "USER:PASS")) var creds: String?

    func options() throws -> RegistryOptions {
        var o = RegistryOptions()
        o.tlsVerify = tlsVerify
        o.certDirectory = certDir
        o.credentials = try creds.map(Credentials.init(creds:))
        o.environment = ProcessInfo.processInfo.environment
        return o
    }
}

struct Pull: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pull",
        abstract: "Pull an image from a registry.",
        discussion: "REF as Docker reads it: busybox is docker.io/library/busybox:latest; HOST[:PORT]/NAME[:TAG][@sha256:…]. Layers already in the store are not downloaded.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var registry: RegistryFlags
    @Argument(help: "The image reference.") var reference: String
    @Option(name: .long, help: "Platform to pick from a multi-platform image (os/arch[/variant]).") var platform: String?
    @Option(name: .long, help: "Refuse a layer over this many uncompressed bytes (suffixes k, m, g).") var maxLayerSize: String = "32g"
    @Option(name: .long, help: "Refuse an image of more layers than this.") var maxLayers: Int = 1000
    @Flag(name: .customShort("q"), help: "No progress: only the image ID.") var q = false

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            let quiet = global.quiet || q
            var options = PullOptions()
            options.registry = try registry.options()
            if let platform { options.load.platform = try Platform(parsing: platform) }
            options.load.maxLayerSize = try ByteSize.parse(maxLayerSize, what: "--max-layer-size")
            guard maxLayers > 0 else { throw StrataError(.invalidArgument, "invalid --max-layers \(maxLayers): expected a positive number") }
            options.load.maxLayers = maxLayers
            let progress = LoadProgress(quiet: quiet)
            options.load.progress = progress.handler
            let pulled: PulledImage
            do {
                defer { progress.finish() }
                pulled = try store.pull(reference, options: options)
            }
            if !quiet { printErr("Digest: \(pulled.resolvedDigest)") }
            print(pulled.image.id.string)
        }
    }
}

struct Push: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "push",
        abstract: "Push an image to a registry.",
        discussion: "Layers the repository has are skipped, layers in another repository of the registry are mounted, the rest are compressed on the fly and uploaded in chunks.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var registry: RegistryFlags
    @Argument(help: "The image (name, ID or ID prefix).") var image: String
    @Argument(help: "Where to push it (default: the image's name).") var destination: String?
    @Option(name: .long, help: "Compression of uploaded layers: gzip, zstd or none (default: a pulled image goes with the manifest it was pulled with; others gzip).") var compress: String?

    func run() throws {
        try strata.run {
            let store = try global.openStore()
            var options = PushOptions()
            options.registry = try registry.options()
            if let compress {
                guard let c = Compression(rawValue: compress), [.gzip, .zstd, .none].contains(c) else {
                    throw StrataError(.invalidArgument, "invalid --compress \"\(compress)\": expected gzip, zstd or none")
                }
                options.compression = c
            }
            let quiet = global.quiet
            options.progress = { line in if !quiet { printErr(line) } }
            let pushed = try store.push(image, to: destination, options: options)
            if !quiet { printErr("pushed \(pushed.reference): \(pushed.uploaded) layer(s) uploaded, \(pushed.reused) reused") }
            print(pushed.manifestDigest.string)
        }
    }
}

struct Login: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "login",
        abstract: "Log in to a registry: check the credentials there, then store them (mode 0600).")
    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "Verify the registry's TLS certificate; false also allows plain http.") var tlsVerify: Bool = true
    @Option(name: .long, help: ArgumentHelp("A directory with ca.crt, client.cert and client.key.", valueName: "DIR")) var certDir: String?
    @Argument(help: "The registry (HOST[:PORT]).") var registry: String
    @Option(name: [.short, .long], help: "User name.") var username: String?
    @Option(name: [.short, .long], help: "Password (prefer --password-stdin: arguments are visible to other users).") var password: String?
    @Flag(name: .long, help: "Read the password from standard input.") var passwordStdin = false
    @Option(name: .long, help: ArgumentHelp("Where to store the credentials (default: strata's own auth.json).", valueName: "FILE")) var authfile: String?

    func run() throws {
        try strata.run {
            guard let username, !username.isEmpty else { throw StrataError(.invalidArgument, "login needs -u USER") }
            if passwordStdin && password != nil { throw StrataError(.invalidArgument, "give the password with -p or --password-stdin, not both") }
            var secret = password
            if passwordStdin {
                let input = try FDHandle.duplicating(0).readAll(limit: 1 << 16, label: "standard input")
                secret = String(decoding: input, as: UTF8.self).trimmingSuffix("\n").trimmingSuffix("\r")
            }
            guard let secret, !secret.isEmpty else { throw StrataError(.invalidArgument, "login needs a password: -p PASS or --password-stdin") }
            let host = try ImageReference.registryHost(registry)
            var options = RegistryOptions()
            options.tlsVerify = tlsVerify
            options.certDirectory = certDir
            options.credentials = Credentials(username: username, password: secret)
            try RegistryClient(registry: host, options: options).verifyAccess()
            let file = authfile ?? CredentialStore.strataFile(environment: ProcessInfo.processInfo.environment)
            try CredentialStore.store(options.credentials, registry: host, file: file)
            print("Login Succeeded!")
        }
    }
}

struct Logout: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logout", abstract: "Forget the stored credentials of a registry.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The registry (HOST[:PORT]).") var registry: String
    @Option(name: .long, help: ArgumentHelp("The credentials file (default: strata's own auth.json).", valueName: "FILE")) var authfile: String?

    func run() throws {
        try strata.run {
            let host = try ImageReference.registryHost(registry)
            let file = authfile ?? CredentialStore.strataFile(environment: ProcessInfo.processInfo.environment)
            guard CredentialStore.has(registry: host, file: file) else {
                throw StrataError(.notFound, "not logged in to \(host) (\(file) has no entry)")
            }
            try CredentialStore.store(nil, registry: host, file: file)
            print("Removed login credentials for \(host)")
        }
    }
}

extension String {
    fileprivate func trimmingSuffix(_ s: String) -> String { hasSuffix(s) ? String(dropLast(s.count)) : self }
}
