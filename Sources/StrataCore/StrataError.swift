/// The one error type of strata: a code callers can switch on, a message that names the
/// file, entry, digest or layer involved and says what to do, and an optional cause
/// (an errno at the syscall boundary, or another error).
public struct StrataError: Error, CustomStringConvertible, Sendable {
    /// Extensible error code: new codes never break callers that switch on the known ones.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Sendable {
            case invalidArgument, notFound, alreadyExists, invalidDigest, digestMismatch, sizeMismatch
            case invalidFormat, unsafeEntry, tooLarge, unsupported, system, internalError, conflict, inUse, storeDamaged, commandFailed
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// A user-supplied argument is malformed.
        public static let invalidArgument = Code(.invalidArgument)
        /// An image, layer, blob or file does not exist.
        public static let notFound = Code(.notFound)
        public static let alreadyExists = Code(.alreadyExists)
        /// A string is not `sha256:` + 64 lowercase hex.
        public static let invalidDigest = Code(.invalidDigest)
        /// Content hashed to another digest than the one naming it.
        public static let digestMismatch = Code(.digestMismatch)
        public static let sizeMismatch = Code(.sizeMismatch)
        /// An archive, manifest or config is malformed.
        public static let invalidFormat = Code(.invalidFormat)
        /// A tar entry would escape the layer root or is otherwise refused.
        public static let unsafeEntry = Code(.unsafeEntry)
        /// Input over a configured limit.
        public static let tooLarge = Code(.tooLarge)
        public static let unsupported = Code(.unsupported)
        /// A syscall failed; the cause carries the errno.
        public static let system = Code(.system)
        public static let internalError = Code(.internalError)
        public static let conflict = Code(.conflict)
        public static let inUse = Code(.inUse)
        /// The store's database does not describe its files (lost, damaged, behind them):
        /// `strata check --repair` rebuilds it.
        public static let storeDamaged = Code(.storeDamaged)
        /// A command the caller asked for ended with an error (a build's RUN step).
        public static let commandFailed = Code(.commandFailed)

        public var description: String { value.rawValue }
    }

    public let code: Code
    public let message: String
    public let cause: (any Error)?

    /// An error of kind `code`; `message` names what failed and what to do; `cause` is what the system said.
    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause { return "\(message): \(cause)" }
        return message
    }
}

extension StrataError {
    /// Adds context (the archive, layer or command being processed) in front of the message.
    public func context(_ prefix: String) -> StrataError {
        StrataError(code, "\(prefix): \(message)", cause: cause)
    }
}
