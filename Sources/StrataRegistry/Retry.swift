import AsyncHTTPClient
import Dispatch
import FoundationEssentials
import NIOCore
import NIOHTTP1
import StrataCore
import StrataSystem

/// How registry requests are retried: on 5xx, on 429 (after the `Retry-After` the registry
/// asks for, capped), on connections refused, reset or closed before the response, and on
/// timeouts; with exponential backoff and jitter, a bounded number of tries and a bounded
/// time. Other 4xx answers are final (a 401 goes through authentication first).
public struct RetryPolicy: Sendable {
    /// Tries per request, the first included.
    public var tries = 5
    /// No new try starts this many seconds after the first one (for a transfer: after the
    /// last time it moved forward).
    public var totalSeconds = 120.0
    /// The pause before the second try; it doubles for each further one, up to `maxDelay`.
    public var baseDelay = 0.5
    public var maxDelay = 8.0
    /// The longest `Retry-After` waited for; a registry asking for more is tried after this.
    public var maxRetryAfter = 30.0
    /// A transfer that receives no byte for this long is abandoned (and resumed).
    public var stallSeconds = 30.0
    /// How long making a connection may take.
    public var connectSeconds = 10.0

    /// The defaults: five tries within two minutes, a 30 s stall limit.
    public init() {}

    /// The defaults, with the stall limit from `STRATA_REGISTRY_STALL_SECONDS` where set.
    public init(environment: [String: String]) {
        if let s = environment["STRATA_REGISTRY_STALL_SECONDS"].flatMap(Double.init), s > 0, s <= 3600 { stallSeconds = s }
    }

    /// The pause before try `n + 1` after `n` failed ones: half of the exponential step plus a
    /// random part of the other half, so that clients that failed together do not return together.
    func delay(after n: Int) -> Double {
        let step = min(maxDelay, baseDelay * Double(1 << min(max(n - 1, 0), 16)))
        return step / 2 + Double.random(in: 0...(step / 2))
    }
}

/// Why one try failed in a way worth another.
enum TransferFailure: Sendable {
    /// A 5xx or 429 answer; `retryAfter` in seconds where the registry said.
    case status(HTTPResponseStatus, retryAfter: Double?)
    /// The connection failed; the phrase says how ("closed before the response").
    case connection(String)

    /// 5xx and 429 are worth another try; any other status is not.
    init?(status: HTTPResponseStatus, headers: HTTPHeaders) {
        guard status.code >= 500 || status == .tooManyRequests else { return nil }
        self = .status(status, retryAfter: headers["Retry-After"].first.flatMap { RetryAfter.seconds($0) })
    }

    /// The connection errors worth another try, in words; nil for any other error.
    init?(_ error: any Error, policy: RetryPolicy) {
        if let e = error as? HTTPClientError {
            switch e {
            case .remoteConnectionClosed: self = .connection("closed before the response")
            case .readTimeout: self = .connection("carried no bytes for \(Seconds(policy.stallSeconds))")
            case .writeTimeout: self = .connection("took no bytes for \(Seconds(policy.stallSeconds))")
            case .connectTimeout: self = .connection("could not be made within \(Seconds(policy.connectSeconds))")
            case .uncleanShutdown: self = .connection("was cut without a proper end")
            default: return nil
            }
            return
        }
        if let e = error as? IOError {
            guard let phrase = Self.phrase(errno: e.errnoCode) else { return nil }
            self = .connection(phrase)
            return
        }
        if let e = error as? HTTPParserError, e == .invalidEOFState {
            self = .connection("closed in the middle of the answer")
            return
        }
        if let e = error as? ChannelError, e == .eof || e == .ioOnClosedChannel || e == .outputClosed {
            self = .connection("closed before the response")
            return
        }
        // NIO's connect error wraps the errno of each address it tried.
        let text = String(describing: error)
        if text.contains("Connection refused") || text.contains("ECONNREFUSED") {
            self = .connection("was refused")
        } else if text.contains("Connection reset") || text.contains("ECONNRESET") {
            self = .connection("was reset")
        } else {
            return nil
        }
    }

    private static func phrase(errno: Int32) -> String? {
        switch Errno(errno) {
        case .ECONNREFUSED: "was refused"
        case .ECONNRESET: "was reset"
        case .EPIPE: "closed while the request was sent"
        case .ETIMEDOUT: "timed out"
        case .EHOSTUNREACH, .ENETUNREACH: "found no route to the host"
        default: nil
        }
    }

    /// How the try failed, as a phrase after "the connection" or a status.
    var phrase: String {
        switch self {
        case .status(let s, _): "answered \(s.code) \(s.reasonPhrase)"
        case .connection(let phrase): phrase
        }
    }

    /// What happened, in words: "registry R answered 500 Internal Server Error for blob sha256:…".
    func sentence(registry: String, what: String) -> String {
        switch self {
        case .status(let s, _): "registry \(registry) answered \(s.code) \(s.reasonPhrase) for \(what)"
        case .connection(let phrase): "the connection to registry \(registry) \(phrase) (\(what))"
        }
    }
}

/// A duration for messages: "31 s", "1.5 s".
struct Seconds: CustomStringConvertible {
    let value: Double
    init(_ value: Double) { self.value = value }
    var description: String {
        value >= 10 || value == value.rounded() ? "\(Int(value.rounded())) s" : "\(Double(Int(value * 10)) / 10) s"
    }
}

/// The tries of one request or transfer: counts failures, waits between them, and gives up
/// (with a message in words) when the policy's tries or time run out.
struct Attempts {
    let policy: RetryPolicy
    let registry: String
    let what: String
    private(set) var failures = 0
    private var since = DispatchTime.now().uptimeNanoseconds

    init(policy: RetryPolicy, registry: String, what: String) {
        self.policy = policy
        self.registry = registry
        self.what = what
    }

    /// A transfer moved forward: the failures before it no longer count.
    mutating func progressed() {
        failures = 0
        since = DispatchTime.now().uptimeNanoseconds
    }

    /// After a failed try: waits before the next one, or throws when none is left.
    mutating func failed(_ failure: TransferFailure) throws {
        failures += 1
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - since) / 1e9
        let sentence = failure.sentence(registry: registry, what: what)
        var pause = policy.delay(after: failures)
        if case .status(_, let retryAfter?) = failure { pause = max(pause, min(retryAfter, policy.maxRetryAfter)) }
        guard failures < policy.tries, elapsed + pause <= policy.totalSeconds else {
            let times = failures == 1 ? "once" : "\(failures) times"
            throw StrataError(.system, "\(sentence) \(times) over \(Seconds(elapsed)); giving up")
        }
        pauseFor(seconds: pause)
    }
}

/// Blocks the calling thread (a load worker, never an event loop) for `seconds`.
func pauseFor(seconds: Double) {
    let semaphore = DispatchSemaphore(value: 0)
    _ = semaphore.wait(timeout: .now() + seconds)
}

/// `Retry-After`: delta-seconds, or an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`).
enum RetryAfter {
    static func seconds(_ value: String, now: Double = wallClock()) -> Double? {
        let v = value.trimmingCharacters(in: " \t")
        if let n = Int(v) { return Double(max(0, n)) }
        guard let date = httpDate(v) else { return nil }
        return max(0, date - now)
    }

    /// Seconds since the epoch of an IMF-fixdate; nil for anything else.
    static func httpDate(_ s: String) -> Double? {
        let parts = s.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard parts.count == 6, parts[5] == "GMT", let day = Int(parts[1]), let year = Int(parts[3]),
              let month = months.firstIndex(of: String(parts[2])) else { return nil }
        let hms = parts[4].split(separator: ":").compactMap { Int($0) }
        // (A year outside 1970–9999 is no date a registry means, and would overflow below.)
        guard hms.count == 3, (1...31).contains(day), hms[0] < 24, hms[1] < 60, hms[2] < 61, (1970...9999).contains(year) else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = month < 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 10) % 12  // March is 0
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return Double(days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
    }

    static func wallClock() -> Double { Date().timeIntervalSince1970 }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let skip = Set(set)
        return String(drop { skip.contains($0) }.reversed().drop { skip.contains($0) }.reversed())
    }
}
