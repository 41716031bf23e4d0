/// An optional that is written to JSON as `null` when absent, instead of being left out: for
/// output whose keys are a documented contract.
@propertyWrapper
public struct NullCoded<Value: Codable & Sendable>: Codable, Sendable {
    public var wrappedValue: Value?

    /// Wraps an optional that encodes as `null` when absent.
    public init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        wrappedValue = c.decodeNil() ? nil : try c.decode(Value.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        if let wrappedValue { try c.encode(wrappedValue) } else { try c.encodeNil() }
    }
}
