import StrataCore

// Picking files from a build context as Docker and BuildKit do:
//
//   - `GlobMatch.match` is Go's path.Match (COPY sources with wildcards);
//   - `IgnorePatterns` is a .dockerignore file, read as moby/patternmatcher's ignorefile.ReadAll
//     reads it and matched as patternmatcher's MatchesOrParentMatches matches it.
//
// patternmatcher does not match with path.Match: it turns each pattern into a Go regular
// expression (`*` → `[^/]*`, `**/` → `(.*/)?`, …) or, when it can, into an exact, prefix or
// suffix comparison. The regular expression is built here with the same steps, then parsed and
// run by the small NFA below, so the odd corners come out as they do in Docker: `a**b` matches
// `a/b` but not `axb`, `**foo` matches `xfoo`, `^` is an anchor, `{2}` a repetition and `|` an
// alternation (`*|x` matches everything), `**` does not cross a newline. Checked against
// patternmatcher itself on a few hundred thousand generated patterns and paths.

// MARK: - Go's path.Match

/// Go's path.Match for one path component: `*` (any run of non-/ characters), `?` (one non-/
/// character), `[...]` classes with ranges and `^` negation, `\` escapes. Names and patterns are
/// compared as Unicode scalars (Go compares bytes and decodes runes for `?` and classes: the same
/// thing for valid UTF-8). Throws `StrataError(.invalidArgument, …)` for a malformed pattern
/// (Go's ErrBadPattern), which Go reports even when the name does not match.
public enum GlobMatch {
    public static func match(_ pattern: String, _ name: String) throws -> Bool {
        do {
            return try GoMatch.match(Array(pattern.unicodeScalars)[...], Array(name.unicodeScalars)[...])
        } catch {
            throw StrataError(.invalidArgument, "syntax error in pattern \"\(pattern)\"")
        }
    }

    /// Whether `s` has any of `*?[` (unescaped): a COPY source with a wildcard. As BuildKit's
    /// containsWildcards: a `\` hides the character after it.
    public static func hasMeta(_ s: String) -> Bool {
        var escaped = false
        for c in s.unicodeScalars {
            if escaped {
                escaped = false
                continue
            }
            switch c {
            case "\\": escaped = true
            case "*", "?", "[": return true
            default: break
            }
        }
        return false
    }
}

/// A port of Go's path.Match (src/path/match.go) over Unicode scalars.
private enum GoMatch {
    typealias Chars = ArraySlice<Unicode.Scalar>
    struct BadPattern: Error {}

    /// `checkRemainder`: path.Match also checks the part of the pattern after a mismatch;
    /// filepath.Match (which patternmatcher validates with) stops at the mismatch.
    static func match(_ pattern: Chars, _ name: Chars, checkRemainder: Bool = true) throws(BadPattern) -> Bool {
        var pattern = pattern
        var name = name
        outer: while !pattern.isEmpty {
            let (star, chunk, rest) = scanChunk(pattern)
            pattern = rest
            if star && chunk.isEmpty {
                // A trailing * matches the rest of the name unless it has a /.
                return !name.contains("/")
            }
            // Look for a match at the current position. If this is the last chunk, the name
            // must be used up, otherwise a star could still match.
            if let t = try matchChunk(chunk, name), t.isEmpty || !pattern.isEmpty {
                name = t
                continue
            }
            if star {
                // Look for a match skipping i+1 characters; a star cannot skip a /.
                var i = name.startIndex
                while i < name.endIndex && name[i] != "/" {
                    if let t = try matchChunk(chunk, name[(i + 1)...]) {
                        // The last chunk must use up the name.
                        if pattern.isEmpty && !t.isEmpty {
                            i += 1
                            continue
                        }
                        name = t
                        continue outer
                    }
                    i += 1
                }
            }
            // Before returning false, check that the rest of the pattern is well formed.
            while checkRemainder && !pattern.isEmpty {
                let (_, chunk, rest) = scanChunk(pattern)
                pattern = rest
                _ = try matchChunk(chunk, Chars())
            }
            return false
        }
        return name.isEmpty
    }

    /// Leading stars, then the chunk up to the next star outside a class.
    static func scanChunk(_ pattern: Chars) -> (star: Bool, chunk: Chars, rest: Chars) {
        var pattern = pattern
        var star = false
        while pattern.first == "*" {
            pattern = pattern.dropFirst()
            star = true
        }
        var inRange = false
        var i = pattern.startIndex
        scan: while i < pattern.endIndex {
            switch pattern[i] {
            case "\\":
                // A trailing \ is reported by matchChunk.
                if i + 1 < pattern.endIndex { i += 1 }
            case "[": inRange = true
            case "]": inRange = false
            case "*": if !inRange { break scan }
            default: break
            }
            i += 1
        }
        return (star, pattern[pattern.startIndex..<i], pattern[i...])
    }

    /// The rest of `s` after the chunk matched its start, or nil. The whole chunk is always
    /// read, so a malformed chunk throws even when the match failed early.
    static func matchChunk(_ chunk: Chars, _ s: Chars) throws(BadPattern) -> Chars? {
        var chunk = chunk
        var s = s
        var failed = false
        while let c = chunk.first {
            if !failed && s.isEmpty { failed = true }
            switch c {
            case "[":
                var r: UInt32 = 0
                if !failed, let first = s.first {
                    r = first.value
                    s = s.dropFirst()
                }
                chunk = chunk.dropFirst()
                var negated = false
                if chunk.first == "^" {
                    negated = true
                    chunk = chunk.dropFirst()
                }
                var matched = false
                var ranges = 0
                while true {
                    if chunk.first == "]" && ranges > 0 {
                        chunk = chunk.dropFirst()
                        break
                    }
                    let lo = try getEsc(&chunk)
                    var hi = lo
                    if chunk.first == "-" {
                        chunk = chunk.dropFirst()
                        hi = try getEsc(&chunk)
                    }
                    if lo <= r && r <= hi { matched = true }
                    ranges += 1
                }
                if matched == negated { failed = true }
            case "?":
                if !failed, let first = s.first {
                    if first == "/" { failed = true }
                    s = s.dropFirst()
                }
                chunk = chunk.dropFirst()
            default:
                var literal = c
                if c == "\\" {
                    chunk = chunk.dropFirst()
                    guard let escaped = chunk.first else { throw BadPattern() }
                    literal = escaped
                }
                if !failed, let first = s.first {
                    if first != literal { failed = true }
                    s = s.dropFirst()
                }
                chunk = chunk.dropFirst()
            }
        }
        return failed ? nil : s
    }

    /// One (possibly escaped) character of a class; a class must go on after it.
    static func getEsc(_ chunk: inout Chars) throws(BadPattern) -> UInt32 {
        guard let c = chunk.first, c != "-", c != "]" else { throw BadPattern() }
        var r = c
        chunk = chunk.dropFirst()
        if c == "\\" {
            guard let escaped = chunk.first else { throw BadPattern() }
            r = escaped
            chunk = chunk.dropFirst()
        }
        if chunk.isEmpty { throw BadPattern() }
        return r.value
    }
}

// MARK: - .dockerignore

/// A .dockerignore file: patterns as moby/patternmatcher reads and matches them.
public struct IgnorePatterns: Sendable {
    struct Entry: Sendable {
        /// The pattern as cleaned, without its `!`.
        var pattern: String
        /// A `!` line: a path it matches is no longer excluded.
        var isException: Bool
        var matcher: PathPattern
    }

    var entries: [Entry]

    /// The lines as ignorefile.ReadAll returns them (for tests and messages).
    var lines: [String] { entries.map { ($0.isException ? "!" : "") + $0.pattern } }

    /// Reads the file's text: one pattern per line, `#` comment lines dropped, whitespace trimmed,
    /// empty lines dropped, a leading `!` marks an exception, each pattern cleaned as
    /// filepath.Clean does (leading `/` removed, so patterns are relative to the context root),
    /// `**` allowed (any number of directories).
    ///
    /// Throws `StrataError(.invalidFormat, …)` for a line Docker refuses: a lone `!`, a pattern
    /// filepath.Match calls malformed (it reads a pattern only up to the first mismatch with "."),
    /// or one whose regular expression Go would not compile (such as the reversed range in
    /// `[z-a]`; Docker fails the build only when it first tries that pattern on a path). Also
    /// refused, though Go reads them: `\b \B \C \Q \p \P`, octal and hex escapes.
    public init(text: String) throws {
        entries = []
        var lineNumber = 0
        for line in Self.readAll(text) {
            lineNumber = line.number
            // patternmatcher.New: trim, clean again, split off the `!`, check with filepath.Match.
            var p = Self.trimSpace(line.text)
            if p.isEmpty { continue }
            p = PathPattern.clean(p)
            var isException = false
            if p.unicodeScalars.first == "!" {
                if p.unicodeScalars.count == 1 {
                    throw StrataError(.invalidFormat, "line \(lineNumber): illegal exclusion pattern: \"!\"")
                }
                isException = true
                p = String(p.unicodeScalars.dropFirst())
            }
            do {
                _ = try GoMatch.match(Array(p.unicodeScalars)[...], ["."], checkRemainder: false)
            } catch {
                throw StrataError(.invalidFormat, "line \(lineNumber): syntax error in pattern \"\(p)\"")
            }
            let matcher: PathPattern
            do {
                matcher = try PathPattern(p)
            } catch {
                throw StrataError(.invalidFormat, "line \(lineNumber): invalid pattern \"\(p)\": \(error.message)")
            }
            entries.append(Entry(pattern: p, isException: isException, matcher: matcher))
        }
    }

    /// No patterns.
    public init() {
        entries = []
    }

    /// Whether there are no patterns.
    public var isEmpty: Bool { entries.isEmpty }

    /// Whether the context-relative path (`a/b/c`, no leading `/`, `/`-separated) is excluded: as
    /// patternmatcher's MatchesOrParentMatches: each pattern is tried against the path and against
    /// each of its parent paths; the last matching pattern decides (an exception un-excludes).
    /// The path is cleaned first (and leading `/`s dropped); the context root itself (`.`) is never
    /// excluded.
    public func excludes(_ path: String) -> Bool {
        guard !entries.isEmpty, let candidates = PathCandidate.withParents(path) else { return false }
        var matched = false
        for entry in entries {
            // An inclusion cannot change a path already matched, an exception one not matched.
            if entry.isException != matched { continue }
            if candidates.contains(where: { entry.matcher.matches($0) }) {
                matched = !entry.isException
            }
        }
        return matched
    }

    /// Whether a walk must still look inside the excluded directory `dir`: true when an exception
    /// that comes after the last pattern excluding `dir` could match some path below it (what
    /// BuildKit's walker checks, here for every kind of pattern). True too when `dir` is not
    /// excluded at all.
    public func mayIncludeBelow(_ dir: String) -> Bool {
        guard let candidates = PathCandidate.withParents(dir), let last = candidates.last else { return true }
        // The last pattern that matches dir or one of its parents decides for dir, and it matches
        // every path below dir as well; only exceptions after it can change their fate. Such an
        // exception must match the path or a parent strictly below dir (had it matched dir or a
        // parent of dir it would have been the last to match dir), so something under "dir/".
        guard let decisive = entries.lastIndex(where: { e in candidates.contains { e.matcher.matches($0) } }),
              !entries[decisive].isException
        else { return true }
        let below = PathCandidate(bytes: (Array(last.bytes) + [UInt8(ascii: "/")])[...], scalars: (Array(last.scalars) + ["/"])[...])
        return entries[(decisive + 1)...].contains { $0.isException && $0.matcher.canMatch(below: below) }
    }

    /// ignorefile.ReadAll: lines split at `\n` (a `\r` before it dropped), a UTF-8 BOM dropped
    /// from the first, lines starting with `#` skipped, whitespace trimmed, empty lines skipped,
    /// the pattern after a `!` cleaned and made relative.
    static func readAll(_ text: String) -> [(number: Int, text: String)] {
        var bytes = Array(text.utf8)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        var rawLines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        if bytes.last == UInt8(ascii: "\n") || bytes.isEmpty { rawLines.removeLast() }
        var result: [(number: Int, text: String)] = []
        for (index, raw) in rawLines.enumerated() {
            var raw = raw
            if raw.last == UInt8(ascii: "\r") { raw = raw.dropLast() }
            if raw.first == UInt8(ascii: "#") { continue }
            var pattern = trimSpace(String(decoding: raw, as: UTF8.self))
            if pattern.isEmpty { continue }
            let invert = pattern.unicodeScalars.first == "!"
            if invert { pattern = trimSpace(String(pattern.unicodeScalars.dropFirst())) }
            if !pattern.isEmpty {
                pattern = PathPattern.clean(pattern)
                if pattern.utf8.count > 1 && pattern.utf8.first == UInt8(ascii: "/") { pattern = String(pattern.unicodeScalars.dropFirst()) }
            }
            result.append((index + 1, invert ? "!" + pattern : pattern))
        }
        return result
    }

    /// Go's strings.TrimSpace: Unicode White_Space on both ends.
    static func trimSpace(_ s: String) -> String {
        let scalars = s.unicodeScalars
        guard let start = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let end = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[start...end])
    }
}

/// A path to match, as bytes (exact, prefix and suffix comparisons) and as scalars (expressions).
struct PathCandidate {
    let bytes: ArraySlice<UInt8>
    let scalars: ArraySlice<Unicode.Scalar>

    /// The cleaned path's parents and the path (`a`, `a/b`, `a/b/c` for `a/b/c`), sharing their
    /// storage; nil for the context root.
    static func withParents(_ path: String) -> [PathCandidate]? {
        var start = 0
        let cleaned = PathPattern.cleanBytes(Array(path.utf8))
        while start < cleaned.count && cleaned[start] == UInt8(ascii: "/") { start += 1 }
        let bytes = Array(cleaned[start...])
        if bytes.isEmpty || bytes == [UInt8(ascii: ".")] { return nil }
        let scalars = Array(String(decoding: bytes, as: UTF8.self).unicodeScalars)
        var result: [PathCandidate] = []
        var byteOffset = 0
        for (i, c) in scalars.enumerated() {
            if c == "/" { result.append(PathCandidate(bytes: bytes[..<byteOffset], scalars: scalars[..<i])) }
            byteOffset += UTF8.width(c)
        }
        result.append(PathCandidate(bytes: bytes[...], scalars: scalars[...]))
        return result
    }
}

/// One cleaned pattern as patternmatcher compiles it (Pattern.compile with "/" as separator).
struct PathPattern: Sendable {
    enum Kind: Sendable {
        case exact([UInt8])
        /// The pattern without its trailing `**`.
        case prefix([UInt8])
        /// The pattern without its leading `**` (a `/` after it kept).
        case suffix([UInt8])
        case expression(RegexProgram)
    }

    let kind: Kind

    init(_ pattern: String) throws(RegexError) {
        let scalars = Array(pattern.unicodeScalars)
        enum Detected { case exact, prefix, suffix, expression }
        var detected = Detected.exact
        var regex = "^"
        var k = 0
        var i = 0
        while k < scalars.count {
            let ch = scalars[k]
            k += 1
            defer { i += 1 }
            switch ch {
            case "*":
                if k < scalars.count && scalars[k] == "*" {
                    // Some flavor of `**`; `**/` counts as `**`.
                    k += 1
                    if k < scalars.count && scalars[k] == "/" { k += 1 }
                    if k == scalars.count {
                        // `**` at the end accepts everything.
                        if detected == .exact {
                            detected = .prefix
                        } else {
                            regex += ".*"
                            detected = .expression
                        }
                    } else {
                        // Any number of directories, even none.
                        regex += "(.*/)?"
                        detected = .expression
                    }
                    if i == 0 { detected = .suffix }
                } else {
                    regex += "[^/]*"
                    detected = .expression
                }
            case "?":
                regex += "[^/]"
                detected = .expression
            case ".", "+", "(", ")", "$":
                // patternmatcher means to escape `.+()|{}$`, but its bitmap drops the bits of
                // `{`, `|` and `}` (1 << (b/8) overflows a byte for them): those three reach the
                // expression as they are, so `|` is an alternation and `{2}` a repetition there.
                regex += "\\" + String(ch)
            case "\\":
                if k < scalars.count {
                    regex += "\\" + String(scalars[k])
                    k += 1
                    detected = .expression
                } else {
                    regex += "\\"
                }
            case "[", "]":
                regex += String(ch)
                detected = .expression
            default:
                regex += String(ch)
            }
        }
        let bytes = Array(pattern.utf8)
        switch detected {
        case .exact: kind = .exact(bytes)
        case .prefix: kind = .prefix(Array(bytes.dropLast(2)))
        case .suffix: kind = .suffix(Array(bytes.dropFirst(2)))
        case .expression: kind = .expression(try RegexProgram(regex + "$"))
        }
    }

    func matches(_ path: PathCandidate) -> Bool {
        switch kind {
        case .exact(let p):
            return path.bytes.elementsEqual(p)
        case .prefix(let p):
            return path.bytes.starts(with: p)
        case .suffix(let p):
            if path.bytes.count >= p.count && path.bytes.suffix(p.count).elementsEqual(p) { return true }
            // `**/foo` matches `foo`.
            return p.first == UInt8(ascii: "/") && path.bytes.elementsEqual(p.dropFirst())
        case .expression(let program):
            return program.matches(path.scalars)
        }
    }

    /// Whether some path starting with `dirSlash` (which ends in `/`) could match.
    func canMatch(below dirSlash: PathCandidate) -> Bool {
        switch kind {
        case .exact(let p):
            return p.starts(with: dirSlash.bytes)
        case .prefix(let p):
            return p.starts(with: dirSlash.bytes) || dirSlash.bytes.starts(with: p)
        case .suffix:
            return true
        case .expression(let program):
            return program.canExtend(dirSlash.scalars)
        }
    }

    /// Go's filepath.Clean on a `/`-separated path.
    static func clean(_ path: String) -> String {
        String(decoding: cleanBytes(Array(path.utf8)), as: UTF8.self)
    }

    static func cleanBytes(_ bytes: [UInt8]) -> [UInt8] {
        if bytes.isEmpty { return [UInt8(ascii: ".")] }
        let slash = UInt8(ascii: "/")
        let rooted = bytes[0] == slash
        var out: [ArraySlice<UInt8>] = []
        var leadingDotDots = 0
        for component in bytes.split(separator: slash) {
            if component.elementsEqual([UInt8(ascii: ".")]) { continue }
            if component.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                if out.count > leadingDotDots {
                    out.removeLast()
                } else if !rooted {
                    out.append(component)
                    leadingDotDots += 1
                }
                continue
            }
            out.append(component)
        }
        var result: [UInt8] = rooted ? [slash] : []
        for (i, component) in out.enumerated() {
            if i > 0 { result.append(slash) }
            result.append(contentsOf: component)
        }
        if result.isEmpty { return [UInt8(ascii: ".")] }
        return result
    }
}

// MARK: - The regular expressions patternmatcher writes

struct RegexError: Error {
    var message: String
}

/// A set of scalars: ranges, possibly negated.
struct ScalarSet: Sendable {
    var ranges: [ClosedRange<UInt32>]
    var negated = false

    func contains(_ v: UInt32) -> Bool {
        ranges.contains { $0.contains(v) } != negated
    }

    static let maxScalar: UInt32 = 0x10FFFF

    static func complement(_ ranges: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        var result: [ClosedRange<UInt32>] = []
        var next: UInt32 = 0
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if r.lowerBound > next { result.append(next...(r.lowerBound - 1)) }
            if r.upperBound >= maxScalar { return result }
            next = max(next, r.upperBound + 1)
        }
        result.append(next...maxScalar)
        return result
    }
}

/// A Thompson NFA for the subset of Go's RE2 syntax (Perl flags) patternmatcher can produce:
/// literals, escapes, classes with ranges, POSIX names and Perl classes, `.`, groups, `|`,
/// `*` `+` `?` `{n,m}`, `^` `$` `\A` `\z`. It is run as Go's MatchString runs an expression:
/// a search for a match anywhere (the `^…$` patternmatcher writes makes that a whole match,
/// except across a `|`), simulating all states at once, so no backtracking.
final class RegexProgram: Sendable {
    enum Node: Sendable {
        case scalar(ScalarSet, next: Int)
        case split(Int, Int)
        case beginText(next: Int)
        case endText(next: Int)
        case accept
    }

    // The states as flat arrays (no enum payloads to copy while running).
    private static let scalarKind: UInt8 = 0, splitKind: UInt8 = 1, beginKind: UInt8 = 2, endKind: UInt8 = 3, acceptKind: UInt8 = 4
    private let kinds: [UInt8]
    private let out1: [Int]
    private let out2: [Int]
    /// A scalar state's set: ranges `lows[rangeStart[s]..<rangeEnd[s]]`, `highs` alike.
    private let rangeStart: [Int]
    private let rangeEnd: [Int]
    private let negated: [Bool]
    private let lows: [UInt32]
    private let highs: [UInt32]
    private let start: Int
    /// Whether every way from the start passes `^` first: then a match can only start at 0.
    private let anchored: Bool
    /// Scalars every match starts (or ends) the input with: checked before running.
    private let literalPrefix: [Unicode.Scalar]
    private let literalSuffix: [Unicode.Scalar]

    init(_ expression: String) throws(RegexError) {
        var parser = RegexParser(scalars: Array(expression.unicodeScalars))
        let branches = try parser.parse()
        var builder = Builder()
        builder.nodes.append(.accept)
        let start = builder.build(branches, next: 0)
        var kinds: [UInt8] = [], out1: [Int] = [], out2: [Int] = []
        var rangeStart: [Int] = [], rangeEnd: [Int] = [], negated: [Bool] = []
        var lows: [UInt32] = [], highs: [UInt32] = []
        for node in builder.nodes {
            var kind = Self.acceptKind, a = 0, b = 0
            let first = lows.count
            var isNegated = false
            switch node {
            case .scalar(let set, let next):
                kind = Self.scalarKind
                a = next
                lows += set.ranges.map(\.lowerBound)
                highs += set.ranges.map(\.upperBound)
                isNegated = set.negated
            case .split(let x, let y):
                kind = Self.splitKind
                a = x
                b = y
            case .beginText(let next):
                kind = Self.beginKind
                a = next
            case .endText(let next):
                kind = Self.endKind
                a = next
            case .accept:
                break
            }
            kinds.append(kind)
            out1.append(a)
            out2.append(b)
            rangeStart.append(first)
            rangeEnd.append(lows.count)
            negated.append(isNegated)
        }
        (self.kinds, self.out1, self.out2, self.start) = (kinds, out1, out2, start)
        (self.rangeStart, self.rangeEnd, self.negated, self.lows, self.highs) = (rangeStart, rangeEnd, negated, lows, highs)
        // Anchored unless some state that reads or accepts is reached without passing `^`.
        var seen = Set<Int>()
        var stack = [start]
        var anchored = true
        while let s = stack.popLast(), anchored {
            guard seen.insert(s).inserted else { continue }
            switch kinds[s] {
            case Self.splitKind: stack += [out1[s], out2[s]]
            case Self.endKind: stack.append(out1[s])
            case Self.beginKind: break
            default: anchored = false
            }
        }
        self.anchored = anchored
        (literalPrefix, literalSuffix) = Self.literals(branches)
    }

    /// With one alternative: the literal scalars right after a leading `^` and right before a
    /// trailing `$`.
    private static func literals(_ branches: [[Piece]]) -> ([Unicode.Scalar], [Unicode.Scalar]) {
        guard branches.count == 1, let pieces = branches.first else { return ([], []) }
        func literal(_ piece: Piece) -> Unicode.Scalar? {
            guard piece.quantifier == .one, case .set(let set) = piece.atom, !set.negated, set.ranges.count == 1,
                  set.ranges[0].lowerBound == set.ranges[0].upperBound
            else { return nil }
            return Unicode.Scalar(set.ranges[0].lowerBound)
        }
        var prefix: [Unicode.Scalar] = []
        if let first = pieces.first, first.quantifier == .one, case .beginText = first.atom {
            for piece in pieces.dropFirst() {
                guard let c = literal(piece) else { break }
                prefix.append(c)
            }
        }
        var suffix: [Unicode.Scalar] = []
        if let last = pieces.last, last.quantifier == .one, case .endText = last.atom {
            for piece in pieces.dropLast().reversed() {
                guard let c = literal(piece) else { break }
                suffix.append(c)
            }
            suffix.reverse()
        }
        return (prefix, suffix)
    }

    /// Whether the expression matches the input (somewhere, as MatchString).
    func matches(_ input: ArraySlice<Unicode.Scalar>) -> Bool {
        if !input.starts(with: literalPrefix) { return false }
        if !literalSuffix.isEmpty && !(input.count >= literalSuffix.count && input.suffix(literalSuffix.count).elementsEqual(literalSuffix)) {
            return false
        }
        return run(input, extendable: false)
    }

    /// Whether some input that starts with `prefix` and goes on could match (conservative).
    func canExtend(_ prefix: ArraySlice<Unicode.Scalar>) -> Bool {
        let common = min(prefix.count, literalPrefix.count)
        if !prefix.prefix(common).elementsEqual(literalPrefix.prefix(common)) { return false }
        return run(prefix, extendable: true)
    }

    @inline(__always)
    private func contains(_ s: Int, _ v: UInt32) -> Bool {
        var k = rangeStart[s]
        let end = rangeEnd[s]
        while k < end {
            if lows[k] <= v && v <= highs[k] { return !negated[s] }
            k += 1
        }
        return negated[s]
    }

    private func run(_ input: ArraySlice<Unicode.Scalar>, extendable: Bool) -> Bool {
        let n = kinds.count
        // Scratch: marks (n), two state lists (n each), the closure stack (2n + 1).
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: 5 * n + 2) { buffer -> Bool in
            let mark = buffer.baseAddress!
            var current = mark + n
            var next = mark + 2 * n
            let stack = mark + 3 * n
            mark.initialize(repeating: -1, count: n)
            var currentCount = 0
            var nextCount = 0
            var accepted = false
            let end = input.count

            /// Adds the scalar states reachable from `state` without reading input; notes an accept.
            func close(_ state: Int, _ position: Int, _ list: UnsafeMutablePointer<Int>, _ count: inout Int) {
                stack[0] = state
                var top = 1
                while top > 0 {
                    top -= 1
                    let s = stack[top]
                    if mark[s] == position { continue }
                    mark[s] = position
                    switch kinds[s] {
                    case Self.scalarKind:
                        list[count] = s
                        count += 1
                    case Self.splitKind:
                        stack[top] = out2[s]
                        stack[top + 1] = out1[s]
                        top += 2
                    case Self.beginKind:
                        if position == 0 {
                            stack[top] = out1[s]
                            top += 1
                        }
                    case Self.endKind:
                        if position == end {
                            stack[top] = out1[s]
                            top += 1
                        }
                    default:
                        accepted = true
                    }
                }
            }

            close(start, 0, current, &currentCount)
            var position = 0
            for c in input {
                if accepted { return true }
                position += 1
                nextCount = 0
                for k in 0..<currentCount where contains(current[k], c.value) {
                    close(out1[current[k]], position, next, &nextCount)
                }
                if !anchored {
                    // A match may start at any position.
                    close(start, position, next, &nextCount)
                } else if nextCount == 0 && !accepted {
                    return false
                }
                swap(&current, &next)
                currentCount = nextCount
            }
            return accepted || (extendable && currentCount > 0)
        }
    }

    enum Quantifier: Equatable {
        case one
        /// {min,max}; max nil for no bound (`*` is {0,}, `+` {1,}, `?` {0,1}).
        case repeated(min: Int, max: Int?)
    }

    indirect enum Atom {
        case set(ScalarSet)
        /// Alternatives, each a sequence.
        case group([[Piece]])
        case beginText
        case endText
    }

    struct Piece {
        var atom: Atom
        var quantifier = Quantifier.one
    }

    /// Builds back to front: each piece is given the state that follows it.
    struct Builder {
        var nodes: [Node] = []

        mutating func add(_ node: Node) -> Int {
            nodes.append(node)
            return nodes.count - 1
        }

        mutating func build(_ branches: [[Piece]], next: Int) -> Int {
            var entry = build(branches[branches.count - 1][...], next: next)
            for branch in branches.dropLast().reversed() {
                let first = build(branch[...], next: next)
                entry = add(.split(first, entry))
            }
            return entry
        }

        mutating func build(_ pieces: ArraySlice<Piece>, next: Int) -> Int {
            var next = next
            for piece in pieces.reversed() { next = build(piece, next: next) }
            return next
        }

        mutating func build(_ atom: Atom, next: Int) -> Int {
            switch atom {
            case .set(let set): return add(.scalar(set, next: next))
            case .group(let branches): return build(branches, next: next)
            case .beginText: return add(.beginText(next: next))
            case .endText: return add(.endText(next: next))
            }
        }

        mutating func build(_ piece: Piece, next: Int) -> Int {
            guard case .repeated(let min, let max) = piece.quantifier else {
                return build(piece.atom, next: next)
            }
            var entry = next
            if let max {
                // Optional copies, each able to skip to what follows.
                for _ in 0..<(max - min) {
                    let body = build(piece.atom, next: entry)
                    entry = add(.split(body, next))
                }
            } else {
                let loop = add(.accept)  // replaced below
                let body = build(piece.atom, next: loop)
                nodes[loop] = .split(body, next)
                entry = loop
            }
            for _ in 0..<min { entry = build(piece.atom, next: entry) }
            return entry
        }
    }
}

/// Parses the part of Go's regexp syntax (Perl flags) that patternmatcher can produce; what Go
/// refuses, and the few things Go reads that are not supported here, throw.
struct RegexParser {
    typealias Piece = RegexProgram.Piece
    let scalars: [Unicode.Scalar]
    var i = 0

    init(scalars: [Unicode.Scalar]) {
        self.scalars = scalars
    }

    static func literal(_ v: UInt32) -> ScalarSet { ScalarSet(ranges: [v...v]) }

    /// The whole expression: alternatives.
    mutating func parse() throws(RegexError) -> [[Piece]] {
        let branches = try parseAlternation()
        if i < scalars.count { throw RegexError(message: "unexpected )") }
        return branches
    }

    mutating func parseAlternation() throws(RegexError) -> [[Piece]] {
        var branches = [try parseSequence()]
        while i < scalars.count && scalars[i] == "|" {
            i += 1
            branches.append(try parseSequence())
        }
        return branches
    }

    /// Pieces up to a `|`, a `)` or the end.
    mutating func parseSequence() throws(RegexError) -> [Piece] {
        var pieces: [Piece] = []
        while i < scalars.count {
            let c = scalars[i]
            switch c {
            case ")", "|":
                return pieces
            case "(":
                i += 1
                if i < scalars.count && scalars[i] == "?" { throw RegexError(message: "unsupported group flags") }
                let inner = try parseAlternation()
                guard i < scalars.count && scalars[i] == ")" else { throw RegexError(message: "missing closing )") }
                i += 1
                pieces.append(Piece(atom: .group(inner)))
            case "*", "+", "?":
                i += 1
                let (min, max): (Int, Int?) = c == "*" ? (0, nil) : c == "+" ? (1, nil) : (0, 1)
                try repeatLast(&pieces, min: min, max: max)
            case "{":
                guard let (min, max, after) = parseRepeat() else {
                    // Not a repetition: a literal `{`.
                    i += 1
                    pieces.append(Piece(atom: .set(Self.literal(c.value))))
                    continue
                }
                if min > 1000 || (max ?? 0) > 1000 || (max.map { min > $0 } ?? false) {
                    throw RegexError(message: "invalid repeat count")
                }
                i = after
                try repeatLast(&pieces, min: min, max: max)
            case "^":
                i += 1
                pieces.append(Piece(atom: .beginText))
            case "$":
                i += 1
                pieces.append(Piece(atom: .endText))
            case ".":
                i += 1
                // Without the s flag, `.` is anything but a newline.
                pieces.append(Piece(atom: .set(ScalarSet(ranges: [0x0A...0x0A], negated: true))))
            case "[":
                i += 1
                pieces.append(Piece(atom: .set(try parseClass())))
            case "\\":
                guard i + 1 < scalars.count else { throw RegexError(message: "trailing backslash") }
                switch scalars[i + 1] {
                case "A":
                    i += 2
                    pieces.append(Piece(atom: .beginText))
                case "z":
                    i += 2
                    pieces.append(Piece(atom: .endText))
                case "b", "B", "C", "Q", "p", "P":
                    throw RegexError(message: "unsupported escape \\\(scalars[i + 1])")
                default:
                    if let perl = perlClass(scalars[i + 1]) {
                        i += 2
                        pieces.append(Piece(atom: .set(ScalarSet(ranges: perl))))
                    } else {
                        i += 1
                        pieces.append(Piece(atom: .set(Self.literal(try parseEscape()))))
                    }
                }
            default:
                i += 1
                pieces.append(Piece(atom: .set(Self.literal(c.value))))
            }
        }
        return pieces
    }

    /// Applies a repetition to the last piece. As in Perl (and Go), repetitions do not stack.
    private mutating func repeatLast(_ pieces: inout [Piece], min: Int, max: Int?) throws(RegexError) {
        guard var last = pieces.popLast() else { throw RegexError(message: "missing argument to repetition operator") }
        guard last.quantifier == .one else { throw RegexError(message: "invalid nested repetition operator") }
        last.quantifier = .repeated(min: min, max: max)
        pieces.append(last)
        // A non-greedy marker does not change whether the expression matches.
        if i < scalars.count && scalars[i] == "?" { i += 1 }
    }

    /// `{n}`, `{n,}` or `{n,m}` at `i` (decimal, no leading zeros), or nil when `{` is a literal.
    private func parseRepeat() -> (min: Int, max: Int?, after: Int)? {
        var j = i + 1
        func number() -> Int? {
            let start = j
            while j < scalars.count, ("0"..."9").contains(scalars[j]) { j += 1 }
            guard j > start, j - start == 1 || scalars[start] != "0" else { return nil }
            var value = 0
            for k in start..<j { value = min(value * 10 + Int(scalars[k].value - 0x30), 100_000_000) }
            return value
        }
        guard let low = number(), j < scalars.count else { return nil }
        var high: Int? = low
        if scalars[j] == "," {
            j += 1
            guard j < scalars.count else { return nil }
            if scalars[j] == "}" {
                high = nil
            } else {
                guard let h = number() else { return nil }
                high = h
            }
        }
        guard j < scalars.count, scalars[j] == "}" else { return nil }
        return (low, high, j + 1)
    }

    /// After `[`: Go's parseClass with Perl flags (`]` first is literal, `-` literal where it
    /// cannot make a range, negated classes match a newline).
    mutating func parseClass() throws(RegexError) -> ScalarSet {
        var negated = false
        if i < scalars.count && scalars[i] == "^" {
            negated = true
            i += 1
        }
        var ranges: [ClosedRange<UInt32>] = []
        var first = true
        while true {
            guard i < scalars.count else { throw RegexError(message: "missing closing ]") }
            if scalars[i] == "]" && !first {
                i += 1
                break
            }
            first = false
            if scalars[i] == "[" && i + 1 < scalars.count && scalars[i + 1] == ":",
               let close = findColonBracket(from: i + 2) {
                let name = String(String.UnicodeScalarView(scalars[(i + 2)..<close]))
                guard let named = posixClass(name) else { throw RegexError(message: "invalid character class [:\(name):]") }
                ranges += named
                i = close + 2
                continue
            }
            if scalars[i] == "\\" && i + 1 < scalars.count {
                if let perl = perlClass(scalars[i + 1]) {
                    ranges += perl
                    i += 2
                    continue
                }
                if scalars[i + 1] == "p" || scalars[i + 1] == "P" {
                    throw RegexError(message: "unsupported escape \\\(scalars[i + 1])")
                }
            }
            let start = i
            let lo = try parseClassChar()
            var hi = lo
            if i + 1 < scalars.count && scalars[i] == "-" && scalars[i + 1] != "]" {
                i += 1
                hi = try parseClassChar()
                if hi < lo {
                    let text = String(String.UnicodeScalarView(scalars[start..<i]))
                    throw RegexError(message: "invalid character class range \(text)")
                }
            }
            ranges.append(lo...hi)
        }
        return ScalarSet(ranges: ranges, negated: negated)
    }

    private func findColonBracket(from start: Int) -> Int? {
        var j = start
        while j + 1 < scalars.count {
            if scalars[j] == ":" && scalars[j + 1] == "]" { return j }
            j += 1
        }
        return nil
    }

    mutating func parseClassChar() throws(RegexError) -> UInt32 {
        guard i < scalars.count else { throw RegexError(message: "missing closing ]") }
        if scalars[i] == "\\" {
            i += 1
            return try parseEscape()
        }
        i += 1
        return scalars[i - 1].value
    }

    /// After `\`: punctuation stands for itself, `\a \f \n \r \t \v` for control characters.
    /// Go also reads octal and hex escapes; they are refused here, like every other letter.
    mutating func parseEscape() throws(RegexError) -> UInt32 {
        guard i < scalars.count else { throw RegexError(message: "trailing backslash") }
        let c = scalars[i]
        i += 1
        if c.isASCII && !Self.isAlphanumeric(c) { return c.value }
        switch c {
        case "a": return 0x07
        case "f": return 0x0C
        case "n": return 0x0A
        case "r": return 0x0D
        case "t": return 0x09
        case "v": return 0x0B
        default: throw RegexError(message: "invalid or unsupported escape \\\(c)")
        }
    }

    static func isAlphanumeric(_ c: Unicode.Scalar) -> Bool {
        ("0"..."9").contains(c) || ("a"..."z").contains(c) || ("A"..."Z").contains(c)
    }

    private static let digit: [ClosedRange<UInt32>] = [0x30...0x39]
    private static let space: [ClosedRange<UInt32>] = [0x09...0x0A, 0x0C...0x0D, 0x20...0x20]
    private static let word: [ClosedRange<UInt32>] = [0x30...0x39, 0x41...0x5A, 0x5F...0x5F, 0x61...0x7A]

    /// `\d \D \s \S \w \W` (ASCII, as in Go).
    private func perlClass(_ c: Unicode.Scalar) -> [ClosedRange<UInt32>]? {
        switch c {
        case "d": Self.digit
        case "D": ScalarSet.complement(Self.digit)
        case "s": Self.space
        case "S": ScalarSet.complement(Self.space)
        case "w": Self.word
        case "W": ScalarSet.complement(Self.word)
        default: nil
        }
    }

    /// `[:alpha:]` and the other POSIX names (ASCII), `[:^alpha:]` negated.
    private func posixClass(_ name: String) -> [ClosedRange<UInt32>]? {
        if name.unicodeScalars.first == "^" {
            return posixClass(String(name.unicodeScalars.dropFirst())).map(ScalarSet.complement)
        }
        switch name {
        case "alnum": return [0x30...0x39, 0x41...0x5A, 0x61...0x7A]
        case "alpha": return [0x41...0x5A, 0x61...0x7A]
        case "ascii": return [0x00...0x7F]
        case "blank": return [0x09...0x09, 0x20...0x20]
        case "cntrl": return [0x00...0x1F, 0x7F...0x7F]
        case "digit": return [0x30...0x39]
        case "graph": return [0x21...0x7E]
        case "lower": return [0x61...0x7A]
        case "print": return [0x20...0x7E]
        case "punct": return [0x21...0x2F, 0x3A...0x40, 0x5B...0x60, 0x7B...0x7E]
        case "space": return [0x09...0x0D, 0x20...0x20]
        case "upper": return [0x41...0x5A]
        case "word": return [0x30...0x39, 0x41...0x5A, 0x5F...0x5F, 0x61...0x7A]
        case "xdigit": return [0x30...0x39, 0x41...0x46, 0x61...0x66]
        default: return nil
        }
    }
}
