import Foundation  // JSONSerialization: configs keep keys this code does not know
import StrataCore

/// Dockerfile instructions applied to an image config, as `docker import --change` and
/// `docker commit --change` take them: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE,
/// VOLUME, STOPSIGNAL, HEALTHCHECK. CMD and ENTRYPOINT take the JSON form or the shell form.
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
        case "HEALTHCHECK":
            config.Healthcheck = try healthcheck(arg, change)
        default:
            throw StrataError(.invalidArgument, "invalid --change \"\(change)\": \(instruction) is not one of CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL, HEALTHCHECK")
        }
    }

    /// `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D] [--retries=N] CMD …`, or `NONE`.
    private static func healthcheck(_ arg: String, _ change: String) throws -> ImageConfig.Healthcheck {
        var rest = Substring(arg)
        var h = ImageConfig.Healthcheck()
        while rest.hasPrefix("--") {
            let option = rest.prefix { $0 != " " }
            rest = rest.dropFirst(option.count).drop { $0 == " " }
            let kv = option.dropFirst(2).split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw StrataError(.invalidArgument, "invalid --change \"\(change)\": \(option) needs a value (--interval=30s)") }
            let nanos = { Int64((try GoDuration.seconds(kv[1], what: "HEALTHCHECK --\(kv[0])") * 1e9).rounded()) }
            switch kv[0] {
            case "interval": h.Interval = try nanos()
            case "timeout": h.Timeout = try nanos()
            case "start-period": h.StartPeriod = try nanos()
            case "start-interval": h.StartInterval = try nanos()
            case "retries":
                guard let n = Int(kv[1]), n >= 0 else { throw StrataError(.invalidArgument, "invalid --change \"\(change)\": --retries takes a number") }
                h.Retries = n
            default: throw StrataError(.invalidArgument, "invalid --change \"\(change)\": HEALTHCHECK has no option --\(kv[0])")
            }
        }
        let words = rest.split(separator: " ", maxSplits: 1).map(String.init)
        switch words.first?.uppercased() {
        case "NONE"?: h.Test = ["NONE"]
        case "CMD"? where words.count == 2:
            let command = words[1].trimmingCharacters(in: .whitespaces)
            h.Test = command.hasPrefix("[") ? ["CMD"] + (try jsonArray(command, change)) : ["CMD-SHELL", command]
        default: throw StrataError(.invalidArgument, "invalid --change \"\(change)\": HEALTHCHECK takes CMD COMMAND or NONE")
        }
        return h
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

/// Go's duration strings as Docker's flags take them: `30s`, `1m30s`, `1.5h`, `500ms`, `0`.
public enum GoDuration {
    /// Seconds in `text`; `what` names the flag in the error.
    public static func seconds(_ text: String, what: String) throws -> Double {
        let bad = StrataError(.invalidArgument, "invalid \(what) \"\(text)\": a duration such as 30s, 1m30s or 500ms")
        if text == "0" { return 0 }
        let units: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
        var rest = Substring(text), total = 0.0
        guard !rest.isEmpty else { throw bad }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard let value = Double(number) else { throw bad }
            rest = rest.dropFirst(number.count)
            guard let (unit, factor) = units.first(where: { rest.hasPrefix($0.0) && !(($0.0 == "m") && rest.hasPrefix("ms")) }) else { throw bad }
            rest = rest.dropFirst(unit.count)
            total += value * factor
        }
        // Go's durations are int64 nanoseconds: about 292 years at most.
        guard total.isFinite, total < 9.2e9 else {
            throw StrataError(.invalidArgument, "invalid \(what) \"\(text)\": more than Go's longest duration (about 292 years)")
        }
        return total
    }
}
