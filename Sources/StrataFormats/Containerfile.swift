import StrataCore

// A Dockerfile/Containerfile read as BuildKit reads it: the line parser of
// moby/buildkit frontend/dockerfile/parser (parser.go, directives.go, split_command.go,
// line_parsers.go) and the word lexer of frontend/dockerfile/shell/lex.go.
//
// Text is handled as Unicode scalars, as Go handles runes; "whitespace" is Go's
// unicode.IsSpace (the White_Space property) unless a rule says otherwise: BuildKit splits
// the keyword from its arguments, and legacy `ENV name value`, on runs of [\t\v\f\r ] only.

// MARK: - Instructions

/// One leading flag of an instruction: `--from=build` is name `from`, value `build`;
/// `--no-cache` is name `no-cache`, value nil. Quotes and escapes in a flag are removed
/// (as BuildKit does before it reads flags); variables in it are not expanded here.
public struct InstructionFlag: Sendable, Equatable {
    public var name: String
    public var value: String?

    public init(name: String, value: String?) {
        self.name = name
        self.value = value
    }
}

/// One instruction as written.
public struct Instruction: Sendable, Equatable {
    /// Uppercased: "FROM", "RUN", … (any word; the builder rejects unknown ones).
    public var keyword: String
    /// 1-based line where the instruction starts.
    public var line: Int
    /// Leading `--name=value` / `--name` flags, only for FROM, RUN, COPY, ADD and HEALTHCHECK;
    /// other instructions keep such words in `arguments`. A lone `--` ends the flags and is dropped.
    public var flags: [InstructionFlag]
    /// The rest after keyword and flags, continuation lines joined, trimmed of surrounding whitespace.
    public var arguments: String
    /// The exec form: `arguments` parsed as a JSON array of strings, nil when it is not one. Set only
    /// for the instructions BuildKit reads JSON for (RUN, CMD, ENTRYPOINT, SHELL, COPY, ADD, VOLUME);
    /// for HEALTHCHECK it is the command after the type word (`HEALTHCHECK CMD ["curl", "-f", "x"]`
    /// gives `["curl", "-f", "x"]`).
    public var json: [String]?
    /// The whole instruction as written with continuations joined (keyword included; leading
    /// whitespace of its first line removed, continuation escapes and comment lines dropped).
    public var original: String

    public init(keyword: String, line: Int, flags: [InstructionFlag] = [], arguments: String, json: [String]? = nil, original: String) {
        self.keyword = keyword
        self.line = line
        self.flags = flags
        self.arguments = arguments
        self.json = json
        self.original = original
    }

    /// `arguments` split on runs of blanks ([\t\v\f\r ]), quotes not honoured: how BuildKit splits
    /// the arguments of FROM, EXPOSE, and the shell form of COPY, ADD and VOLUME before it expands
    /// each part as one word (`WordExpander.expand`; EXPOSE parts with `words`).
    public var fields: [String] {
        var out: [String] = []
        var current = String()
        for scalar in arguments.unicodeScalars {
            if Lexical.isBlank(scalar) {
                if !current.isEmpty { out.append(current); current = String() }
            } else {
                current.unicodeScalars.append(scalar)
            }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }
}

public struct Containerfile: Sendable {
    /// The name used in messages.
    public var file: String
    /// "\\" by default, "`" with the escape directive.
    public var escape: Character
    public var instructions: [Instruction]

    public init(file: String, escape: Character = "\\", instructions: [Instruction]) {
        self.file = file
        self.escape = escape
        self.instructions = instructions
    }

    /// Parses the file's bytes (UTF-8; an initial BOM skipped). Throws
    /// StrataError(.invalidFormat, "FILE:LINE: …") naming file and line.
    public static func parse(_ bytes: [UInt8], file: String) throws -> Containerfile {
        var body = bytes[...]
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        var reader = LineReader(lines: Lexical.lines(body), file: file, escape: "\\", directives: true, fixedLine: nil)
        let instructions = try reader.read()
        if instructions.isEmpty {
            throw StrataError(.invalidFormat, "\(file):\(max(1, reader.lines.count)): file with no instructions")
        }
        return Containerfile(file: file, escape: Character(reader.escape), instructions: instructions)
    }

    /// Parses one instruction's text (for ONBUILD triggers), `line` for messages. The text may hold
    /// continuation lines and comments as a file would; it must hold exactly one instruction.
    public static func parseInstruction(_ text: String, escape: Character, file: String, line: Int) throws -> Instruction {
        let escapeScalar = escape.unicodeScalars.first ?? "\\"
        var reader = LineReader(lines: Lexical.lines(Array(text.utf8)[...]), file: file, escape: escapeScalar,
                                directives: false, fixedLine: line)
        let instructions = try reader.read()
        guard instructions.count == 1 else {
            let what = instructions.isEmpty ? "holds no instruction" : "must be a single instruction"
            throw StrataError(.invalidFormat, "\(file):\(line): trigger \(Lexical.quoted(text)) \(what)")
        }
        return instructions[0]
    }
}

// MARK: - Words

/// BuildKit's shell lexer (shell/lex.go ProcessWord / ProcessWords) for Dockerfile words.
public struct WordExpander: Sendable {
    let escape: Unicode.Scalar

    public init(escape: Character) {
        self.escape = escape.unicodeScalars.first ?? "\\"
    }

    /// One word: quotes removed, escapes applied, $VAR ${VAR} ${VAR:-word} ${VAR-word} ${VAR:+word}
    /// ${VAR+word} ${VAR:?msg} ${VAR?msg} (and ${VAR#pat} ${VAR##pat} ${VAR%pat} ${VAR%%pat}
    /// ${VAR/pat/repl} ${VAR//pat/repl}) expanded from `lookup` (nil: unset). Unquoted whitespace
    /// is kept (ProcessWord). Errors are StrataError(.invalidArgument, "failed to process \"WORD\": …").
    public func expand(_ word: String, _ lookup: (String) -> String?) throws -> String {
        try run(word, lookup).result
    }

    /// Words split on unquoted whitespace (whitespace that a variable expands to splits too), each
    /// expanded (ProcessWords); a word that expands to nothing is dropped, as BuildKit does.
    public func words(_ text: String, _ lookup: (String) -> String?) throws -> [String] {
        try run(text, lookup).words
    }

    /// KEY=VALUE pairs for ENV, LABEL, ARG: BuildKit's parseNameVal / parseNameOrNameVal, then
    /// expansion. Words are split on unquoted whitespace (quotes and escapes kept), each must be
    /// KEY=VALUE (split at the first `=`); then KEY and VALUE are each expanded as one word. The
    /// legacy form `ENV KEY rest of line` (no `=` in the first word) gives one pair whose value is the
    /// rest of the line, expanded. With `allowMissingValue` (ARG) a word without `=` is a name with
    /// value nil, there is no legacy form, and names are not expanded (BuildKit expands only an ARG's
    /// default). `lookup` sees what was set before this instruction, not its earlier pairs.
    /// Errors for an empty key or a missing value are StrataError(.invalidArgument, message).
    public func pairs(_ text: String, _ lookup: (String) -> String?, allowMissingValue: Bool) throws -> [(key: String, value: String?)] {
        let raw: [(key: String, value: String?)]
        do {
            raw = try NameValue.split(Lexical.trimSpace(Array(text.unicodeScalars)), escape: escape, allowMissingValue: allowMissingValue)
        } catch {
            throw StrataError(.invalidArgument, error.message(keyword: nil))
        }
        var out: [(key: String, value: String?)] = []
        out.reserveCapacity(raw.count)
        for pair in raw {
            if allowMissingValue {
                out.append((pair.key, try pair.value.map { try expand($0, lookup) }))
            } else {
                let key = try expand(pair.key, lookup)
                if key.isEmpty {
                    throw StrataError(.invalidArgument, "names can not be blank: \(Lexical.quoted(pair.key)) expands to nothing")
                }
                out.append((key, try expand(pair.value ?? "", lookup)))
            }
        }
        return out
    }

    private func run(_ text: String, _ lookup: (String) -> String?) throws -> (result: String, words: [String]) {
        var lexer = ShellLexer(Array(text.unicodeScalars), escape: escape)
        do {
            return try lexer.processStopOn(nil, rawEscapes: false, lookup)
        } catch let error as ShellLexer.Failure {
            throw StrataError(.invalidArgument, "failed to process \(Lexical.quoted(text)): \(error.message)")
        }
    }
}

// MARK: - Line reader (parser.go Parse)

private struct LineReader {
    let lines: [[Unicode.Scalar]]
    let file: String
    var escape: Unicode.Scalar
    /// Directive scanning is over (directives.go DirectiveParser.done).
    var directivesDone: Bool
    var seenDirectives: Set<String> = []
    /// parseInstruction: every message names this line.
    let fixedLine: Int?

    init(lines: [[Unicode.Scalar]], file: String, escape: Unicode.Scalar, directives: Bool, fixedLine: Int?) {
        self.lines = lines
        self.file = file
        self.escape = escape
        self.directivesDone = !directives
        self.fixedLine = fixedLine
    }

    mutating func read() throws -> [Instruction] {
        var out: [Instruction] = []
        var index = 0
        while index < lines.count {
            let startLine = fixedLine ?? index + 1
            let token = Lexical.trimLeadingSpace(lines[index])
            index += 1
            try directive(token, line: startLine)
            if Lexical.isComment(token) { continue }
            var (text, isEnd) = trimContinuation(token)
            if isEnd && text.isEmpty { continue }
            var buffer = text
            while !isEnd && index < lines.count {
                let raw = lines[index]
                index += 1
                // A comment inside a continued instruction is dropped, as is a blank line.
                if Lexical.isComment(raw) || Lexical.trimLeadingSpace(raw).isEmpty { continue }
                (text, isEnd) = trimContinuation(raw)
                buffer += text
            }
            out.append(try InstructionBuilder(file: file, line: startLine, escape: escape).make(buffer))
        }
        return out
    }

    /// `# key=value` at the very top (directives.go ParseLine): `syntax` and `check` are accepted and
    /// ignored, `escape` sets the escape token. The first line that is not one ends the scan.
    private mutating func directive(_ token: [Unicode.Scalar], line: Int) throws {
        guard !directivesDone else { return }
        guard token.first == "#" else { directivesDone = true; return }
        // ^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$ after the `#` and leading whitespace.
        var i = 1
        while i < token.count && Lexical.isSpace(token[i]) { i += 1 }
        guard i < token.count, Lexical.isASCIILetter(token[i]) else { directivesDone = true; return }
        var j = i + 1
        while j < token.count && (Lexical.isASCIILetter(token[j]) || Lexical.isASCIIDigit(token[j])) { j += 1 }
        let key = Lexical.string(token[i..<j]).lowercased()
        var k = j
        while k < token.count && Lexical.isRE2Space(token[k]) { k += 1 }
        guard k < token.count, token[k] == "=" else { directivesDone = true; return }
        let rest = token[(k + 1)...]
        guard let last = rest.last else { directivesDone = true; return }
        let value: String
        if rest.allSatisfy(Lexical.isRE2Space) {
            value = String(Character(last))   // what the regexp's lazy (.+?) is left with
        } else {
            var from = rest.startIndex, to = rest.endIndex
            while Lexical.isRE2Space(rest[from]) { from += 1 }
            while Lexical.isRE2Space(rest[to - 1]) { to -= 1 }
            value = Lexical.string(rest[from..<to])
        }
        guard key == "syntax" || key == "escape" || key == "check" else { directivesDone = true; return }
        guard seenDirectives.insert(key).inserted else {
            throw StrataError(.invalidFormat, "\(file):\(line): only one \(key) parser directive can be used")
        }
        if key == "escape" {
            guard value == "`" || value == "\\" else {
                throw StrataError(.invalidFormat, "\(file):\(line): invalid escape token '\(value)' does not match ` or \\")
            }
            escape = value.unicodeScalars.first!
        }
    }

    /// The escape token as the last character but spaces and tabs continues the line, unless another
    /// escape token precedes it (BuildKit's `([^\\])\\[ \t]*$|^\\[ \t]*$`): the token and what
    /// follows it are removed.
    private func trimContinuation(_ line: [Unicode.Scalar]) -> ([Unicode.Scalar], isEnd: Bool) {
        var end = line.count
        while end > 0 && (line[end - 1] == " " || line[end - 1] == "\t") { end -= 1 }
        guard end > 0, line[end - 1] == escape else { return (line, true) }
        if end == 1 { return ([], false) }
        if line[end - 2] == escape { return (line, true) }
        return (Array(line[..<(end - 1)]), false)
    }
}

// MARK: - One instruction (split_command.go, line_parsers.go)

private struct InstructionBuilder {
    let file: String
    let line: Int
    let escape: Unicode.Scalar

    static let flagKeywords: Set<String> = ["FROM", "RUN", "COPY", "ADD", "HEALTHCHECK"]
    static let jsonKeywords: Set<String> = ["RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"]
    static let heredocKeywords: Set<String> = ["RUN", "COPY", "ADD"]

    func fail(_ message: String) -> StrataError {
        StrataError(.invalidFormat, "\(file):\(line): \(message)")
    }

    func make(_ text: [Unicode.Scalar]) throws -> Instruction {
        let trimmed = Lexical.trimSpace(text)
        guard !trimmed.isEmpty else { throw fail("empty instruction (a line continuation at the end of the file)") }
        var split = 0
        while split < trimmed.count && !Lexical.isBlank(trimmed[split]) { split += 1 }
        let keyword = Lexical.string(trimmed[..<split]).uppercased()
        while split < trimmed.count && Lexical.isBlank(trimmed[split]) { split += 1 }
        var rest = Array(trimmed[split...])

        var flags: [InstructionFlag] = []
        if Self.flagKeywords.contains(keyword) {
            let extracted = Self.extractBuilderFlags(rest, escape: escape)
            rest = extracted.rest
            flags = extracted.words.map { word in
                let body = word.hasPrefix("--") ? String(word.dropFirst(2)) : word
                if let eq = body.firstIndex(of: "=") {
                    return InstructionFlag(name: String(body[..<eq]), value: String(body[body.index(after: eq)...]))
                }
                return InstructionFlag(name: body, value: nil)
            }
        }
        let args = Lexical.trimSpace(rest)
        guard !args.isEmpty else { throw fail("\(keyword) requires at least one argument") }

        var json: [String]? = nil
        if Self.jsonKeywords.contains(keyword) {
            json = JSONStrings.parseArray(args)
        } else if keyword == "HEALTHCHECK" {
            // parseHealthConfig: the type word, then maybe JSON.
            var sep = 0
            while sep < args.count && !Lexical.isSpace(args[sep]) { sep += 1 }
            while sep < args.count && Lexical.isSpace(args[sep]) { sep += 1 }
            json = JSONStrings.parseArray(Array(args[sep...]))
        }

        if Self.heredocKeywords.contains(keyword) && json == nil && Heredoc.appears(in: text) {
            throw fail("heredocs are not supported")
        }

        switch keyword {
        case "ENV", "LABEL", "ARG":
            // What BuildKit finds wrong in these before the build starts.
            do {
                _ = try NameValue.split(args, escape: escape, allowMissingValue: keyword == "ARG")
            } catch {
                throw fail(error.message(keyword: keyword))
            }
        case "ONBUILD":
            // BuildKit parses the trigger along with the file; a trigger that is itself ONBUILD
            // (or FROM, MAINTAINER) is refused here, before any nesting.
            var end = 0
            while end < args.count && !Lexical.isBlank(args[end]) { end += 1 }
            let trigger = Lexical.string(args[..<end]).uppercased()
            guard !["ONBUILD", "FROM", "MAINTAINER"].contains(trigger) else {
                throw fail("ONBUILD \(trigger) is not allowed")
            }
            _ = try make(args)
        default:
            break
        }

        return Instruction(keyword: keyword, line: line, flags: flags, arguments: Lexical.string(args[...]),
                           json: json, original: Lexical.string(text[...]))
    }

    /// split_command.go extractBuilderFlags: leading words that start with `--`, quotes removed
    /// and escapes applied (also inside single quotes, as BuildKit does); `--` alone ends them.
    static func extractBuilderFlags(_ line: [Unicode.Scalar], escape: Unicode.Scalar) -> (rest: [Unicode.Scalar], words: [String]) {
        enum Phase { case spaces, word, quote }
        var words: [String] = []
        var phase = Phase.spaces
        var word = String()
        var quote: Unicode.Scalar = "\0"
        var blankOK = false
        var pos = 0
        while pos <= line.count {
            let atEnd = pos == line.count
            let ch: Unicode.Scalar = atEnd ? "\0" : line[pos]
            if phase == .spaces {
                if atEnd { break }
                if Lexical.isSpace(ch) { pos += 1; continue }
                if ch != "-" || pos + 1 == line.count || line[pos + 1] != "-" {
                    return (Array(line[pos...]), words)
                }
                phase = .word
            }
            if atEnd {
                if word != "--" && (blankOK || !word.isEmpty) { words.append(word) }
                break
            }
            if phase == .word {
                if Lexical.isSpace(ch) {
                    phase = .spaces
                    if word == "--" { return (Array(line[pos...]), words) }
                    if blankOK || !word.isEmpty { words.append(word) }
                    word = String()
                    blankOK = false
                    pos += 1
                    continue
                }
                if ch == "'" || ch == "\"" {
                    quote = ch
                    blankOK = true
                    phase = .quote
                    pos += 1
                    continue
                }
                var c = ch
                if ch == escape {
                    if pos + 1 == line.count { pos += 1; continue }
                    pos += 1
                    c = line[pos]
                }
                word.unicodeScalars.append(c)
                pos += 1
                continue
            }
            // phase == .quote
            if ch == quote { phase = .word; pos += 1; continue }
            var c = ch
            if ch == escape {
                if pos + 1 == line.count { phase = .word; pos += 1; continue }
                pos += 1
                c = line[pos]
            }
            word.unicodeScalars.append(c)
            pos += 1
        }
        return ([], words)
    }
}

// MARK: - ENV, LABEL, ARG (line_parsers.go parseNameVal, parseNameOrNameVal; instructions parseKvps, parseArg)

private enum NameValue {
    enum Failure: Error {
        case missingValue(String)
        case noEquals(String)
        case blankName(String)

        func message(keyword: String?) -> String {
            switch self {
            case .missingValue(let text):
                if let keyword { return "\(keyword) must have two arguments" }
                return "\(Lexical.quoted(text)) has no value: use name=value (or name value)"
            case .noEquals(let word):
                return "Syntax error - can't find = in \(Lexical.quoted(word)). Must be of the form: name=value"
            case .blankName(let word):
                if let keyword { return "\(keyword) names can not be blank" }
                return "names can not be blank: \(Lexical.quoted(word))"
            }
        }
    }

    /// The raw pairs: quotes and escapes still in them.
    static func split(_ args: [Unicode.Scalar], escape: Unicode.Scalar, allowMissingValue: Bool) throws(Failure) -> [(key: String, value: String?)] {
        let words = parseWords(args, escape: escape)
        guard let first = words.first else { return [] }
        var out: [(key: String, value: String?)] = []
        if allowMissingValue {
            for word in words {
                if let eq = word.firstIndex(of: "=") {
                    if eq == word.startIndex { throw .blankName(word) }
                    out.append((String(word[..<eq]), String(word[word.index(after: eq)...])))
                } else {
                    out.append((word, nil))
                }
            }
            return out
        }
        if !first.contains("=") {
            // Legacy `ENV name value…`: the value is the rest of the line after the first blank run.
            var split = 0
            while split < args.count && !Lexical.isBlank(args[split]) { split += 1 }
            let key = Lexical.string(args[..<split])
            guard split < args.count else { throw .missingValue(key) }
            while split < args.count && Lexical.isBlank(args[split]) { split += 1 }
            return [(key, Lexical.string(args[split...]))]
        }
        for word in words {
            guard let eq = word.firstIndex(of: "=") else { throw .noEquals(word) }
            if eq == word.startIndex { throw .blankName(word) }
            out.append((String(word[..<eq]), String(word[word.index(after: eq)...])))
        }
        return out
    }

    /// line_parsers.go parseWords: words split on unquoted whitespace; quotes and escapes are kept
    /// (an escape token outside single quotes keeps the character after it in the word).
    static func parseWords(_ rest: [Unicode.Scalar], escape: Unicode.Scalar) -> [String] {
        enum Phase { case spaces, word, quote }
        var words: [String] = []
        var phase = Phase.spaces
        var quote: Unicode.Scalar = "\0"
        var blankOK = false
        var word = String()
        var pos = 0
        while pos <= rest.count {
            let atEnd = pos == rest.count
            let ch: Unicode.Scalar = atEnd ? "\0" : rest[pos]
            if phase == .spaces {
                if atEnd { break }
                if Lexical.isSpace(ch) { pos += 1; continue }
                phase = .word
            }
            if atEnd {
                if blankOK || !word.isEmpty { words.append(word) }
                break
            }
            if phase == .word {
                if Lexical.isSpace(ch) {
                    phase = .spaces
                    if blankOK || !word.isEmpty { words.append(word) }
                    word = String()
                    blankOK = false
                    pos += 1
                    continue
                }
                if ch == "'" || ch == "\"" {
                    quote = ch
                    blankOK = true
                    phase = .quote
                }
                var c = ch
                if ch == escape {
                    if pos + 1 == rest.count { pos += 1; continue }
                    word.unicodeScalars.append(ch)
                    pos += 1
                    c = rest[pos]
                }
                word.unicodeScalars.append(c)
                pos += 1
                continue
            }
            // phase == .quote
            if ch == quote { phase = .word }
            var c = ch
            if ch == escape && quote != "'" {
                if pos + 1 == rest.count { phase = .word; pos += 1; continue }
                word.unicodeScalars.append(ch)
                pos += 1
                c = rest[pos]
            }
            word.unicodeScalars.append(c)
            pos += 1
        }
        return words
    }
}

// MARK: - Heredocs (parser.go heredocsFromLine, ParseHeredoc)

private enum Heredoc {
    /// Whether BuildKit would read a heredoc in this RUN/COPY/ADD line: a word (lexed with quotes
    /// and escapes kept, the escape token being `\` whatever the directive says) of the form
    /// `[n]<<[-]WORD`, WORD one word and no `<` in it.
    static func appears(in line: [Unicode.Scalar]) -> Bool {
        guard line.indices.dropLast().contains(where: { line[$0] == "<" && line[$0 + 1] == "<" }) else { return false }
        var lexer = ShellLexer(line, escape: "\\")
        lexer.rawQuotes = true
        lexer.skipUnsetEnv = true
        guard let words = try? lexer.processStopOn(nil, rawEscapes: true, { _ in nil }).words else { return false }
        return words.contains(where: isHeredocWord)
    }

    private static func isHeredocWord(_ word: String) -> Bool {
        let s = Array(word.unicodeScalars)
        var i = 0
        while i < s.count && Lexical.isASCIIDigit(s[i]) { i += 1 }
        guard i + 1 < s.count, s[i] == "<", s[i + 1] == "<" else { return false }
        i += 2
        if i < s.count && s[i] == "-" { i += 1 }
        while i < s.count && Lexical.isRE2Space(s[i]) { i += 1 }
        let rest = Array(s[i...])
        guard !rest.isEmpty, !rest.contains("<") else { return false }
        var lexer = ShellLexer(rest, escape: "\\")
        lexer.skipUnsetEnv = true
        // BuildKit fails the parse when this lexing fails; either way the line holds a heredoc.
        guard let words = try? lexer.processStopOn(nil, rawEscapes: false, { _ in nil }).words else { return true }
        return words.count == 1
    }
}

// MARK: - JSON exec form (line_parsers.go parseJSON)

private enum JSONStrings {
    /// A JSON array of strings, or nil (not JSON, not an array, or an element that is not a string).
    static func parseArray(_ text: [Unicode.Scalar]) -> [String]? {
        var i = 0
        let n = text.count
        func skipSpace() {
            while i < n && (text[i] == " " || text[i] == "\t" || text[i] == "\n" || text[i] == "\r") { i += 1 }
        }
        while i < n && Lexical.isSpace(text[i]) { i += 1 }
        guard i < n, text[i] == "[" else { return nil }
        i += 1
        skipSpace()
        var out: [String] = []
        if i < n && text[i] == "]" {
            i += 1
        } else {
            while true {
                guard let s = parseString(text, &i) else { return nil }
                out.append(s)
                skipSpace()
                guard i < n else { return nil }
                if text[i] == "," { i += 1; skipSpace(); continue }
                if text[i] == "]" { i += 1; break }
                return nil
            }
        }
        skipSpace()
        return i == n ? out : nil
    }

    private static func parseString(_ text: [Unicode.Scalar], _ i: inout Int) -> String? {
        let n = text.count
        guard i < n, text[i] == "\"" else { return nil }
        i += 1
        var out = String()
        func hex4(_ at: Int) -> UInt32? {
            guard at + 4 <= n else { return nil }
            var v: UInt32 = 0
            for k in at..<(at + 4) {
                guard let d = Lexical.hexValue(text[k]) else { return nil }
                v = v << 4 | d
            }
            return v
        }
        while i < n {
            let c = text[i]
            i += 1
            switch c {
            case "\"":
                return out
            case "\\":
                guard i < n else { return nil }
                let e = text[i]
                i += 1
                switch e {
                case "\"", "\\", "/": out.unicodeScalars.append(e)
                case "b": out.unicodeScalars.append("\u{08}")
                case "f": out.unicodeScalars.append("\u{0C}")
                case "n": out.unicodeScalars.append("\n")
                case "r": out.unicodeScalars.append("\r")
                case "t": out.unicodeScalars.append("\t")
                case "u":
                    guard let unit = hex4(i) else { return nil }
                    i += 4
                    if (0xD800..<0xDC00).contains(unit), i + 6 <= n, text[i] == "\\", text[i + 1] == "u",
                       let low = hex4(i + 2), (0xDC00..<0xE000).contains(low) {
                        i += 6
                        out.unicodeScalars.append(Unicode.Scalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))!)
                    } else {
                        // A lone surrogate reads as U+FFFD, as Go's encoding/json has it.
                        out.unicodeScalars.append(Unicode.Scalar(unit) ?? "\u{FFFD}")
                    }
                default:
                    return nil
                }
            default:
                if c.value < 0x20 { return nil }
                out.unicodeScalars.append(c)
            }
        }
        return nil
    }
}

// MARK: - Shell lexer (shell/lex.go)

private struct ShellLexer {
    struct Failure: Error { var message: String }

    let source: [Unicode.Scalar]
    var pos = 0
    let escape: Unicode.Scalar
    var rawQuotes = false
    var rawEscapes = false
    var skipUnsetEnv = false

    init(_ source: [Unicode.Scalar], escape: Unicode.Scalar) {
        self.source = source
        self.escape = escape
    }

    private func peek() -> Unicode.Scalar? { pos < source.count ? source[pos] : nil }

    private mutating func next() -> Unicode.Scalar? {
        guard pos < source.count else { return nil }
        pos += 1
        return source[pos - 1]
    }

    /// Collects ProcessWords' words: whitespace splits, except in raw (quoted, escaped) text.
    private struct Words {
        var buffer = String()
        var words: [String] = []
        var inWord = false

        mutating func addChar(_ c: Unicode.Scalar) {
            if Lexical.isSpace(c) {
                if inWord && !buffer.isEmpty {
                    words.append(buffer)
                    buffer = String()
                    inWord = false
                }
            } else {
                addRawChar(c)
            }
        }

        mutating func addRawChar(_ c: Unicode.Scalar) {
            buffer.unicodeScalars.append(c)
            inWord = true
        }

        mutating func addString(_ s: String) {
            for c in s.unicodeScalars { addChar(c) }
        }

        mutating func addRawString(_ s: String) {
            buffer += s
            inWord = true
        }

        mutating func finish() -> [String] {
            if !buffer.isEmpty {
                words.append(buffer)
                buffer = String()
                inWord = false
            }
            return words
        }
    }

    /// Processes up to `stop` (consumed) or the end of the text.
    mutating func processStopOn(_ stop: Unicode.Scalar?, rawEscapes raw: Bool, _ env: (String) -> String?) throws -> (result: String, words: [String]) {
        let saved = rawEscapes
        rawEscapes = raw
        defer { rawEscapes = saved }
        var result = String()
        var words = Words()
        scan: while let ch = peek() {
            if let stop, ch == stop {
                pos += 1
                return (result, words.finish())
            }
            switch ch {
            case "$":
                let value = try processDollar(env)
                result += value
                words.addString(value)
            case "<":
                let value = processPossibleHeredoc()
                result += value
                words.addRawString(value)
            case "'":
                let value = try processSingleQuote()
                result += value
                words.addRawString(value)
            case "\"":
                let value = try processDoubleQuote(env)
                result += value
                words.addRawString(value)
            default:
                var c = next()!
                if c == escape {
                    if rawEscapes {
                        words.addRawChar(c)
                        result.unicodeScalars.append(c)
                    }
                    // The escape token escapes the next character; at the end it is dropped.
                    guard let escaped = next() else { break scan }
                    c = escaped
                    words.addRawChar(c)
                } else {
                    words.addChar(c)
                }
                result.unicodeScalars.append(c)
            }
        }
        if let stop {
            throw Failure(message: "unexpected end of statement while looking for matching \(Character(stop))")
        }
        return (result, words.finish())
    }

    private mutating func processSingleQuote() throws -> String {
        var result = String()
        let open = next()!
        if rawQuotes { result.unicodeScalars.append(open) }
        while true {
            guard let c = next() else {
                throw Failure(message: "unexpected end of statement while looking for matching single-quote")
            }
            if c == "'" {
                if rawQuotes { result.unicodeScalars.append(c) }
                return result
            }
            result.unicodeScalars.append(c)
        }
    }

    /// Inside double quotes only `$` is special, and the escape token before `"`, `$` or itself;
    /// before anything else the escape token stays.
    private mutating func processDoubleQuote(_ env: (String) -> String?) throws -> String {
        var result = String()
        let open = next()!
        if rawQuotes { result.unicodeScalars.append(open) }
        while true {
            guard let p = peek() else {
                throw Failure(message: "unexpected end of statement while looking for matching double-quote")
            }
            if p == "\"" {
                let close = next()!
                if rawQuotes { result.unicodeScalars.append(close) }
                return result
            }
            if p == "$" {
                result += try processDollar(env)
                continue
            }
            var c = next()!
            if c == escape {
                if rawEscapes { result.unicodeScalars.append(c) }
                guard let following = peek() else { continue }
                if following == "\"" || following == "$" || following == escape {
                    c = next()!
                }
            }
            result.unicodeScalars.append(c)
        }
    }

    /// The longest values a pattern removal (`#`, `%`: quadratic) and a pattern replacement
    /// (`/`: cubic in the value's length) work on: past them a Containerfile could keep a build
    /// busy for hours.
    static let trimLimit = 16_384
    static let replaceLimit = 1_024

    static func checkPatternInput(_ count: Int, limit: Int) throws {
        guard count <= limit else {
            throw Failure(message: "a pattern substitution on a value of \(count) characters (at most \(limit))")
        }
    }

    /// How deep substitutions nest (`${a:-${b:-…}}`) before the lexer refuses: its recursion
    /// must not run the stack out.
    static let nestingLimit = 64
    var nesting = 0

    private mutating func processDollar(_ env: (String) -> String?) throws -> String {
        nesting += 1
        defer { nesting -= 1 }
        guard nesting <= ShellLexer.nestingLimit else {
            throw Failure(message: "substitutions nested more than \(ShellLexer.nestingLimit) deep")
        }
        _ = next()   // $
        if peek() != "{" {
            let name = processName()
            if name.isEmpty { return "$" }
            let value = env(name)
            if value == nil && skipUnsetEnv { return "$" + name }
            return value ?? ""
        }
        _ = next()   // {
        guard let first = peek() else { throw Failure(message: "syntax error: missing '}'") }
        if first == "{" || first == "}" || first == ":" {
            throw Failure(message: "syntax error: bad substitution")
        }
        let name = processName()
        guard let ch = next() else { throw Failure(message: "syntax error: missing '}'") }
        switch ch {
        case "}":
            let value = env(name)
            if value == nil && skipUnsetEnv { return "${\(name)}" }
            return value ?? ""
        case ":", "+", "-", "?", "#", "%":
            var op: Unicode.Scalar? = ch
            var modifier = String(Character(ch))
            var nullIsUnset = false
            if ch == ":" {
                nullIsUnset = true
                op = next()
                modifier += op.map { String(Character($0)) } ?? "\u{FFFD}"
            }
            let rawWord = op == "#" || op == "%"
            if nullIsUnset && rawWord {
                throw Failure(message: "unsupported modifier (\(modifier)) in substitution")
            }
            var word: String
            do {
                word = try processStopOn("}", rawEscapes: rawWord, env).result
            } catch {
                if peek() == nil { throw Failure(message: "syntax error: missing '}'") }
                throw error
            }
            let value = env(name)
            if value == nil && skipUnsetEnv { return "${\(name)\(modifier)\(word)}" }
            let isNull = value == nil || (nullIsUnset && value!.isEmpty)
            switch op ?? "\u{FFFD}" {
            case "-":
                return isNull ? word : value!
            case "+":
                return isNull ? "" : word
            case "?":
                if value == nil {
                    throw Failure(message: "\(name): \(word.isEmpty ? "is not allowed to be unset" : word)")
                }
                if nullIsUnset && value!.isEmpty {
                    throw Failure(message: "\(name): \(word.isEmpty ? "is not allowed to be empty" : word)")
                }
                return value!
            case "#", "%":
                // # and % remove the shortest matching prefix or suffix, ## and %% the longest.
                var greedy = false
                if let firstScalar = word.unicodeScalars.first, firstScalar == op {
                    greedy = true
                    word = String(word.unicodeScalars.dropFirst())
                }
                let pattern = try ShellPattern(word)
                let text = Array((value ?? "").unicodeScalars)
                try ShellLexer.checkPatternInput(text.count, limit: ShellLexer.trimLimit)
                return op == "%" ? pattern.trimSuffix(text, greedy: greedy) : pattern.trimPrefix(text, greedy: greedy)
            default:
                throw Failure(message: "unsupported modifier (\(modifier)) in substitution")
            }
        case "/":
            let replaceAll = peek() == "/"
            if replaceAll { _ = next() }
            let patternText: String
            do {
                patternText = try processStopOn("/", rawEscapes: true, env).result
            } catch {
                if peek() == nil { throw Failure(message: "syntax error: missing '/' in ${}") }
                throw error
            }
            let replacement: String
            do {
                replacement = try processStopOn("}", rawEscapes: true, env).result
            } catch {
                if peek() == nil { throw Failure(message: "syntax error: missing '}'") }
                throw error
            }
            let value = env(name)
            if value == nil && skipUnsetEnv { return "${\(name)/\(patternText)/\(replacement)}" }
            let pattern = try ShellPattern(patternText)
            let text = Array((value ?? "").unicodeScalars)
            try ShellLexer.checkPatternInput(text.count, limit: ShellLexer.replaceLimit)
            return pattern.replace(in: text, with: replacement, all: replaceAll)
        default:
            throw Failure(message: "unsupported modifier (\(Character(ch))) in substitution")
        }
    }

    /// A name: letters, digits and `_`; or digits alone (positional); or one special parameter.
    private mutating func processName() -> String {
        var name = String()
        while let ch = peek() {
            if name.isEmpty && Lexical.isDigit(ch) {
                while let d = peek(), Lexical.isDigit(d) {
                    name.unicodeScalars.append(d)
                    pos += 1
                }
                return name
            }
            if name.isEmpty && "@*#?-$!0".unicodeScalars.contains(ch) {
                pos += 1
                return String(Character(ch))
            }
            if !Lexical.isLetter(ch) && !Lexical.isDigit(ch) && ch != "_" { break }
            name.unicodeScalars.append(ch)
            pos += 1
        }
        return name
    }

    /// `<` is itself; `<<` takes the blanks after it with it (kept in the same word).
    private mutating func processPossibleHeredoc() -> String {
        _ = next()
        guard peek() == "<" else { return "<" }
        _ = next()
        var result = "<<"
        while let c = peek(), c == "\t" || c == "\r" || c == " " {
            result.unicodeScalars.append(c)
            pos += 1
        }
        return result
    }
}

/// A shell pattern of ${VAR#…}, ${VAR%…}, ${VAR/…/…}: `*` any run, `?` one character, `\` before
/// `*`, `?` or `\` makes it literal, `\` before `}` or `/` is dropped (lex.go convertShellPatternToRegex).
private struct ShellPattern {
    enum Token: Equatable { case star, one, literal(Unicode.Scalar) }
    let tokens: [Token]

    init(_ pattern: String) throws {
        let s = Array(pattern.unicodeScalars)
        var tokens: [Token] = []
        var i = 0
        while i < s.count {
            let c = s[i]
            i += 1
            switch c {
            case "*": tokens.append(.star)
            case "?": tokens.append(.one)
            case "\\":
                if i < s.count && (s[i] == "}" || s[i] == "/") { continue }
                guard i < s.count, s[i] == "*" || s[i] == "?" || s[i] == "\\" else {
                    let what = i < s.count ? String(Character(s[i])) : "\u{FFFD}"
                    throw ShellLexer.Failure(message: "invalid pattern (\(pattern)) in substitution: invalid escape '\\\(what)'")
                }
                tokens.append(.literal(s[i]))
                i += 1
            default:
                tokens.append(.literal(c))
            }
        }
        self.tokens = tokens
    }

    /// Whether the whole of `text` matches.
    func matches(_ text: ArraySlice<Unicode.Scalar>) -> Bool {
        var t = text.startIndex
        var p = 0
        var starP = -1
        var starT = t
        while t < text.endIndex {
            if p < tokens.count {
                switch tokens[p] {
                case .star:
                    starP = p
                    starT = t
                    p += 1
                    continue
                case .one:
                    p += 1
                    t += 1
                    continue
                case .literal(let c) where c == text[t]:
                    p += 1
                    t += 1
                    continue
                default:
                    break
                }
            }
            guard starP >= 0 else { return false }
            p = starP + 1
            starT += 1
            t = starT
        }
        while p < tokens.count && tokens[p] == .star { p += 1 }
        return p == tokens.count
    }

    func trimPrefix(_ value: [Unicode.Scalar], greedy: Bool) -> String {
        let lengths = greedy ? Array((0...value.count).reversed()) : Array(0...value.count)
        for k in lengths where matches(value[0..<k]) {
            return Lexical.string(value[k...])
        }
        return Lexical.string(value[...])
    }

    func trimSuffix(_ value: [Unicode.Scalar], greedy: Bool) -> String {
        let n = value.count
        let lengths = greedy ? Array((0...n).reversed()) : Array(0...n)
        for k in lengths where matches(value[(n - k)..<n]) {
            return Lexical.string(value[..<(n - k)])
        }
        return Lexical.string(value[...])
    }

    /// The leftmost match at or after `from`, the longest there.
    private func find(_ value: [Unicode.Scalar], from: Int) -> Range<Int>? {
        guard from <= value.count else { return nil }
        for start in from...value.count {
            for end in stride(from: value.count, through: start, by: -1) where matches(value[start..<end]) {
                return start..<end
            }
        }
        return nil
    }

    /// Go's Regexp.ReplaceAllString / one FindStringIndex replacement; the replacement is literal.
    func replace(in value: [Unicode.Scalar], with replacement: String, all: Bool) -> String {
        if !all {
            guard let m = find(value, from: 0) else { return Lexical.string(value[...]) }
            return Lexical.string(value[..<m.lowerBound]) + replacement + Lexical.string(value[m.upperBound...])
        }
        var out = String()
        var lastMatchEnd = 0
        var searchPos = 0
        while searchPos <= value.count, let m = find(value, from: searchPos) {
            out += Lexical.string(value[lastMatchEnd..<m.lowerBound])
            // No second replacement for an empty match right after another match.
            if m.upperBound > lastMatchEnd || m.lowerBound == 0 { out += replacement }
            lastMatchEnd = m.upperBound
            searchPos = searchPos + 1 > m.upperBound ? searchPos + 1 : m.upperBound
        }
        out += Lexical.string(value[lastMatchEnd...])
        return out
    }
}

// MARK: - Characters and lines

private enum Lexical {
    /// Go's unicode.IsSpace.
    static func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }

    /// BuildKit's reWhitespace class [\t\v\f\r ].
    static func isBlank(_ c: Unicode.Scalar) -> Bool {
        c == " " || c == "\t" || c == "\u{0B}" || c == "\u{0C}" || c == "\r"
    }

    /// RE2's \s: [\t\n\f\r ].
    static func isRE2Space(_ c: Unicode.Scalar) -> Bool {
        c == " " || c == "\t" || c == "\n" || c == "\u{0C}" || c == "\r"
    }

    static func isASCIILetter(_ c: Unicode.Scalar) -> Bool { (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") }
    static func isASCIIDigit(_ c: Unicode.Scalar) -> Bool { c >= "0" && c <= "9" }

    /// Go's unicode.IsLetter (category L).
    static func isLetter(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// Go's unicode.IsDigit (category Nd).
    static func isDigit(_ c: Unicode.Scalar) -> Bool { c.properties.generalCategory == .decimalNumber }

    static func hexValue(_ c: Unicode.Scalar) -> UInt32? {
        switch c {
        case "0"..."9": return c.value - 0x30
        case "a"..."f": return c.value - 0x61 + 10
        case "A"..."F": return c.value - 0x41 + 10
        default: return nil
        }
    }

    static func string(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
        var s = String()
        s.unicodeScalars.append(contentsOf: scalars)
        return s
    }

    static func trimLeadingSpace(_ line: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard let first = line.firstIndex(where: { !isSpace($0) }) else { return [] }
        return first == 0 ? line : Array(line[first...])
    }

    /// Go's strings.TrimSpace.
    static func trimSpace(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard let first = text.firstIndex(where: { !isSpace($0) }),
              let last = text.lastIndex(where: { !isSpace($0) }) else { return [] }
        return Array(text[first...last])
    }

    static func isComment(_ line: [Unicode.Scalar]) -> Bool {
        line.first(where: { !isSpace($0) }) == "#"
    }

    /// Lines split at `\n`, each without its trailing `\r`/`\n` characters; no empty line after a final newline.
    static func lines(_ bytes: ArraySlice<UInt8>) -> [[Unicode.Scalar]] {
        var parts = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        if parts.last?.isEmpty == true { parts.removeLast() }
        return parts.map { part in
            var line = part
            while let last = line.last, last == 0x0D || last == 0x0A { line = line.dropLast() }
            return Array(String(decoding: line, as: UTF8.self).unicodeScalars)
        }
    }

    /// Double-quoted for messages, escaped as a JSON string (a control character shows as one).
    static func quoted(_ text: String) -> String { LayoutWriter.json(text) }
}
