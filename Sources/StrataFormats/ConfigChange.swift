import Foundation  // JSONSerialization: configs keep keys this code does not know
import StrataCore

/// Dockerfile instructions applied to an image config, as `docker import --change` and
/// `docker commit --change` take them: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE,
/// VOLUME, STOPSIGNAL. CMD and ENTRYPOINT take the JSON form or the shell form.
public enum ConfigChange {
    /// Applies one Dockerfile-style instruction (`CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`, `USER`, `EXPOSE`, `LABEL`, `VOLUME`, `STOPSIGNAL`) to `config`.
    public static func apply(_ change: String, to config: inout ImageConfig.Config) throws {
        let trimmed = change.trimmingCharacters(in: .whitespaces)
        let parts = trimmed.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2 else {
            throw StrataError(.invalidArgument, "invalid --change \"\(change)\": expected INSTRUCTION ARGUMENTS, e.g. 'CMD [\"sh\"]'")
        }
        let instruction = parts[0].uppercased()
        let arg = String(parts[1]).trimmingCharacters(in: .whitespaces)
        switch instruction {
        case "CMD": config.Cmd = try command(arg, change)
        case "ENTRYPOINT": config.Entrypoint = try command(arg, change)
        case "WORKDIR": config.WorkingDir = arg
        case "USER": config.User = arg
        case "STOPSIGNAL": config.StopSignal = arg
        case "ENV":
            var env = config.Env ?? []
            for (k, v) in try pairs(arg, change) {
                env.removeAll { $0.hasPrefix(k + "=") }
                env.append("\(k)=\(v)")
            }
            config.Env = env
        case "LABEL":
            var labels = config.Labels ?? [:]
            for (k, v) in try pairs(arg, change) { labels[k] = v }
            config.Labels = labels
        case "EXPOSE":
            var ports = config.ExposedPorts ?? [:]
            for p in arg.split(separator: " ") { ports[p.contains("/") ? String(p) : "\(p)/tcp"] = .init() }
            config.ExposedPorts = ports
        case "VOLUME":
            var vols = config.Volumes ?? [:]
            let list = arg.hasPrefix("[") ? try jsonArray(arg, change) : arg.split(separator: " ").map(String.init)
            for v in list { vols[v] = .init() }
            config.Volumes = vols
        default:
            throw StrataError(.invalidArgument, "invalid --change \"\(change)\": \(instruction) is not one of CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL")
        }
    }

    private static func command(_ arg: String, _ change: String) throws -> [String] {
        if arg.hasPrefix("[") { return try jsonArray(arg, change) }
        return ["/bin/sh", "-c", arg]
    }

    private static func jsonArray(_ arg: String, _ change: String) throws -> [String] {
        guard let data = arg.data(using: .utf8),
              let list = try? JSONSerialization.jsonObject(with: data) as? [String] else {
            throw StrataError(.invalidArgument, "invalid --change \"\(change)\": expected a JSON array of strings")
        }
        return list
    }

    /// `K=V K2="V 2"` or the legacy `K V` form.
    private static func pairs(_ arg: String, _ change: String) throws -> [(String, String)] {
        guard arg.contains("=") else {
            let kv = arg.split(separator: " ", maxSplits: 1)
            guard kv.count == 2 else { throw StrataError(.invalidArgument, "invalid --change \"\(change)\": expected KEY=VALUE") }
            return [(String(kv[0]), String(kv[1]))]
        }
        var result: [(String, String)] = []
        var current = ""
        var quote: Character? = nil
        var tokens: [String] = []
        for ch in arg {
            if let q = quote {
                if ch == q { quote = nil } else { current.append(ch) }
            } else if ch == "\"" || ch == "'" {
                quote = ch
            } else if ch == " " {
                if !current.isEmpty { tokens.append(current); current = "" }
            } else {
                current.append(ch)
            }
        }
        if !current.isEmpty { tokens.append(current) }
        for t in tokens {
            guard let eq = t.firstIndex(of: "="), eq != t.startIndex else {
                throw StrataError(.invalidArgument, "invalid --change \"\(change)\": \"\(t)\" is not KEY=VALUE")
            }
            result.append((String(t[..<eq]), String(t[t.index(after: eq)...])))
        }
        return result
    }
}
