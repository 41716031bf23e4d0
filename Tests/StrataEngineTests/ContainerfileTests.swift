import Testing
@testable import StrataEngine

/// Value tests, no root: Containerfiles read as BuildKit reads them, and its word processing.
@Suite struct ContainerfileTests {
    static let env: [String: String] = ["HOME": "/root", "EMPTY": "", "SPACED": "a  b", "V": "1.2.3"]

    func parse(_ text: String, file: String = "Containerfile") throws -> Containerfile {
        try Containerfile.parse(Array(text.utf8), file: file)
    }

    /// The message `body` fails with (nil when it does not fail).
    func failure(_ body: () throws -> Any) -> StrataError? {
        do {
            _ = try body()
            return nil
        } catch {
            return error as? StrataError
        }
    }

    func expand(_ word: String, escape: Character = "\\") throws -> String {
        try WordExpander(escape: escape).expand(word) { Self.env[$0] }
    }

    @Test func continuationsSkipCommentsAndBlankLines() throws {
        let text = [
            "FROM alpine:3.20",
            "",
            "RUN apk add \\",
            "# a comment inside the instruction",
            "    curl \\",
            "",
            "    git   \\  ",
            "  && echo done",
            "  # an indented comment",
            "CMD [\"sh\"]",
        ].joined(separator: "\n")
        let cf = try parse(text)
        #expect(cf.instructions.map(\.keyword) == ["FROM", "RUN", "CMD"])
        #expect(cf.instructions.map(\.line) == [1, 3, 10])
        let run = cf.instructions[1]
        // Escape and what follows it removed, lines joined with nothing between them.
        #expect(run.arguments == "apk add     curl     git     && echo done")
        #expect(run.original == "RUN apk add     curl     git     && echo done")
        #expect(run.json == nil)

        // A continuation at the end of the file ends the instruction.
        let atEOF = try parse("FROM x\nRUN echo hi \\")
        #expect(atEOF.instructions.last?.arguments == "echo hi")
        // An escaped escape does not continue; a comment ending in the escape does not either.
        let escaped = try parse("FROM x\n# note \\\nRUN echo a\\\\\nRUN echo b")
        #expect(escaped.instructions.map(\.arguments) == ["x", "echo a\\\\", "echo b"])
        // Leading whitespace and a lowercase keyword.
        let loose = try parse("  from x\n\trun   echo   hi  ")
        #expect(loose.instructions.map(\.keyword) == ["FROM", "RUN"])
        #expect(loose.instructions[1].arguments == "echo   hi")
    }

    @Test func escapeDirectiveWithBacktick() throws {
        let text = [
            "# escape=`",
            "FROM mcr.microsoft.com/windows/servercore",
            "COPY testfile.txt C:\\",
            "RUN dir C:\\",
            "WORKDIR C:\\path\\to `",
            "    \\sub",
            "ENV P=C:\\Program` Files\\App Q=`$HOME",
        ].joined(separator: "\n")
        let cf = try parse(text)
        #expect(cf.escape == "`")
        #expect(cf.instructions.map(\.keyword) == ["FROM", "COPY", "RUN", "WORKDIR", "ENV"])
        // A trailing backslash is a path, not a continuation.
        #expect(cf.instructions[1].arguments == "testfile.txt C:\\")
        #expect(cf.instructions[2].arguments == "dir C:\\")
        #expect(cf.instructions[3].arguments == "C:\\path\\to     \\sub")
        let words = WordExpander(escape: cf.escape)
        #expect(try words.expand(cf.instructions[3].arguments) { _ in nil } == "C:\\path\\to     \\sub")
        let pairs = try words.pairs(cf.instructions[4].arguments, { Self.env[$0] }, allowMissingValue: false)
        #expect(pairs.map(\.key) == ["P", "Q"])
        #expect(pairs.map(\.value) == ["C:\\Program Files\\App", "$HOME"])
        #expect(try expand("C:\\dir\\`$HOME`\"", escape: "`") == "C:\\dir\\$HOME\"")

        // With the default escape the same line continues.
        let plain = try parse("FROM x\nRUN dir C:\\\nRUN x")
        #expect(plain.escape == "\\")
        #expect(plain.instructions.map(\.arguments) == ["x", "dir C:RUN x"])

        // Case and spaces around the key do not matter; `syntax` and `check` are accepted.
        let spaced = try parse("#  ESCAPE = `\n# syntax=docker/dockerfile:1\n#check=skip=all\nFROM x")
        #expect(spaced.escape == "`")
    }

    @Test func directivesOnlyAtTheTop() throws {
        // A blank line, another comment or an instruction ends them: later ones are comments.
        #expect(try parse("# syntax=x\n\n# escape=`\nFROM a").escape == "\\")
        #expect(try parse("# hello\n# escape=`\nFROM a").escape == "\\")
        #expect(try parse("FROM a\n# escape=`\nRUN b").escape == "\\")
        let repeated = failure { try parse("# escape=`\n# ESCAPE=\\\nFROM a") }
        #expect(repeated?.message == "Containerfile:2: only one escape parser directive can be used")
        #expect(repeated?.code == .invalidFormat)
        let invalid = failure { try parse("# escape=x\nFROM a", file: "Dockerfile.win") }
        #expect(invalid?.message.hasPrefix("Dockerfile.win:1: invalid escape token 'x'") == true)
    }

    @Test func flags() throws {
        let text = [
            "FROM --platform=linux/amd64 golang:1.22 AS build",
            "COPY --from=build --chown=1000:1000 --link /out /app",
            "RUN --mount=type=cache,target=/root/.cache --network=none go build ./...",
            "COPY --from=\"my stage\" a b",
            "COPY -- --dash-file /dst",
            "HEALTHCHECK --interval=5s --timeout=3s CMD [\"curl\", \"-f\", \"http://localhost/\"]",
            "ENV --not-a-flag=1",
            "CMD --help",
        ].joined(separator: "\n")
        let ins = try parse(text).instructions
        #expect(ins[0].flags == [InstructionFlag(name: "platform", value: "linux/amd64")])
        #expect(ins[0].arguments == "golang:1.22 AS build")
        #expect(ins[0].fields == ["golang:1.22", "AS", "build"])
        #expect(ins[1].flags == [InstructionFlag(name: "from", value: "build"), InstructionFlag(name: "chown", value: "1000:1000"),
                                 InstructionFlag(name: "link", value: nil)])
        #expect(ins[1].arguments == "/out /app")
        #expect(ins[2].flags.map(\.name) == ["mount", "network"])
        #expect(ins[2].flags[0].value == "type=cache,target=/root/.cache")
        #expect(ins[2].arguments == "go build ./...")
        #expect(ins[3].flags == [InstructionFlag(name: "from", value: "my stage")])
        // `--` ends the flags.
        #expect(ins[4].flags.isEmpty && ins[4].arguments == "--dash-file /dst")
        #expect(ins[5].flags.map(\.name) == ["interval", "timeout"])
        #expect(ins[5].arguments == "CMD [\"curl\", \"-f\", \"http://localhost/\"]")
        #expect(ins[5].json == ["curl", "-f", "http://localhost/"])
        // Other instructions keep such words as arguments.
        #expect(ins[6].flags.isEmpty && ins[6].arguments == "--not-a-flag=1")
        #expect(ins[7].flags.isEmpty && ins[7].arguments == "--help")
        // Flags alone are not arguments.
        #expect(failure { try parse("FROM a\nRUN --network=none")}?.message == "Containerfile:2: RUN requires at least one argument")
    }

    @Test func jsonAndShellForm() throws {
        let text = [
            "FROM a",
            "CMD [\"nginx\", \"-g\", \"daemon off;\"]",
            "CMD nginx -g 'daemon off;'",
            "ENTRYPOINT [ \"/bin/sh\" ,\t\"-c\" ]  ",
            #"RUN ["echo", "a\"b\\c\/d", "\u00e9\n", "\ud83d\ude00"]"#,
            "SHELL [\"powershell\", \"-Command\"]",
            "VOLUME [\"/data\", \"/logs\"]",
            "CMD []",
            "WORKDIR [\"/x\"]",
            "COPY [\"a b\", \"/dst/\"]",
        ].joined(separator: "\n")
        let ins = try parse(text).instructions
        #expect(ins[1].json == ["nginx", "-g", "daemon off;"])
        #expect(ins[2].json == nil && ins[2].arguments == "nginx -g 'daemon off;'")
        #expect(ins[3].json == ["/bin/sh", "-c"])
        #expect(ins[4].json == ["echo", "a\"b\\c/d", "é\n", "😀"])
        #expect(ins[5].json == ["powershell", "-Command"])
        #expect(ins[6].json == ["/data", "/logs"])
        #expect(ins[7].json == [])
        // Only the exec-form instructions read JSON.
        #expect(ins[8].json == nil && ins[8].arguments == "[\"/x\"]")
        #expect(ins[9].json == ["a b", "/dst/"])
    }

    @Test func invalidJSONFallsBackToShellForm() throws {
        let forms = [
            "['echo', 'single quotes']",
            "[\"echo\", \"unterminated]",
            "[\"echo\", \"no bracket\"",
            "[\"echo\", 1]",
            "[\"echo\", [\"nested\"]]",
            "[\"echo\",]",
            "[\"echo\"] trailing",
            "[\"bad \\x escape\"]",
            "'[\"echo\", \"JSON in a string\"]'",
        ]
        let text = (["FROM a"] + forms.map { "CMD " + $0 }).joined(separator: "\n")
        let ins = try parse(text).instructions.dropFirst()
        #expect(ins.map(\.json) == Array(repeating: nil, count: forms.count))
        #expect(ins.map(\.arguments) == forms)
    }

    @Test func envBothForms() throws {
        let lookup: (String) -> String? = { Self.env[$0] }
        let words = WordExpander(escape: "\\")
        let pairs = try words.pairs(#"A="hello world" B=x\ y C=$HOME D='$HOME' E="$HOME/bin" F=${V%.*} G="a\"b""#, lookup, allowMissingValue: false)
        #expect(pairs.map(\.key) == ["A", "B", "C", "D", "E", "F", "G"])
        #expect(pairs.map(\.value) == ["hello world", "x y", "/root", "$HOME", "/root/bin", "1.2", "a\"b"])

        // Legacy: the value is the rest of the line, expanded.
        let legacy = try words.pairs(#"EXTRA /opt/bin:$HOME   two "quoted  words""#, lookup, allowMissingValue: false)
        #expect(legacy.count == 1 && legacy[0].key == "EXTRA" && legacy[0].value == "/opt/bin:/root   two quoted  words")

        // Labels with quoted keys; the lookup is the caller's, not the earlier pairs'.
        let labels = try words.pairs(#""com.example.vendor"="ACME Inc" a=1 b=$a"#, { _ in nil }, allowMissingValue: false)
        #expect(labels.map(\.key) == ["com.example.vendor", "a", "b"])
        #expect(labels.map(\.value) == ["ACME Inc", "1", ""])

        // ARG: a name alone has no value; only defaults are expanded.
        let args = try words.pairs("VERSION=${V:-0} TARGET EMPTY=", lookup, allowMissingValue: true)
        #expect(args.map(\.key) == ["VERSION", "TARGET", "EMPTY"])
        #expect(args.map(\.value) == ["1.2.3", nil, ""])

        let noEquals = failure { try words.pairs("A=1 B", lookup, allowMissingValue: false) }
        #expect(noEquals?.code == .invalidArgument)
        #expect(noEquals?.message.contains("can't find = in \"B\"") == true)
        #expect(failure { try words.pairs("=x", lookup, allowMissingValue: false) }?.code == .invalidArgument)
        #expect(failure { try words.pairs("=x", lookup, allowMissingValue: true) }?.code == .invalidArgument)
        #expect(failure { try words.pairs("ONLY", lookup, allowMissingValue: false) }?.code == .invalidArgument)

        // The same mistakes are found when the file is read, at the instruction's line.
        #expect(failure { try parse("FROM a\nENV \\\n  FOO") }?.message == "Containerfile:2: ENV must have two arguments")
        #expect(failure { try parse("FROM a\nLABEL a=1 =2") }?.message == "Containerfile:2: LABEL names can not be blank")
        #expect(failure { try parse("FROM a\nARG =2") }?.message == "Containerfile:2: ARG names can not be blank")
        #expect(failure { try parse("FROM a\nENV a=1 b") }?.message.hasPrefix("Containerfile:2: Syntax error - can't find = in \"b\"") == true)
    }

    @Test func variableModifiers() throws {
        #expect(try expand("${UNSET:-default} ${EMPTY:-default} [${EMPTY-default}] ${UNSET-default}") == "default default [] default")
        #expect(try expand("${HOME:+set} [${UNSET+set}] ${EMPTY+set} [${EMPTY:+set}]") == "set [] set []")
        #expect(try expand("${UNSET:-$HOME/x} ${UNSET:-${HOME:+nested}}") == "/root/x nested")
        #expect(try expand("$HOME${HOME}x $HOMEx") == "/root/rootx ")
        #expect(try expand("${V#*.} ${V##*.} ${V%.*} ${V%%.*} ${V/./-} ${V//./-}") == "2.3 3 1.2 1 1-2.3 1-2-3")
        #expect(try expand("a$ b 100$ $.x") == "a$ b 100$ $.x")
        #expect(try expand("[${EMPTY?}]") == "[]")

        let unset = failure { try expand("${UNSET:?must be set}") }
        #expect(unset?.code == .invalidArgument)
        #expect(unset?.message.contains("UNSET: must be set") == true)
        #expect(failure { try expand("${EMPTY:?}") }?.message.contains("EMPTY: is not allowed to be empty") == true)
        #expect(failure { try expand("${UNSET?}") }?.message.contains("UNSET: is not allowed to be unset") == true)
        #expect(failure { try expand("${HOME:=x}") }?.message.contains("unsupported modifier (:=)") == true)
        #expect(failure { try expand("${HOME^^}") }?.message.contains("unsupported modifier") == true)
        #expect(failure { try expand("${}") }?.message.contains("bad substitution") == true)
        #expect(failure { try expand("${HOME") }?.message.contains("missing '}'") == true)
    }

    @Test func singleAndDoubleQuotes() throws {
        #expect(try expand(#"'$HOME "x" \n'"#) == #"$HOME "x" \n"#)
        #expect(try expand(#""$HOME 'x'""#) == "/root 'x'")
        // In double quotes the escape only escapes ", $ and itself.
        #expect(try expand(#""a\"b\$c\\d\e""#) == #"a"b$c\d\e"#)
        // Outside quotes it makes the next character literal.
        #expect(try expand(#"a\ b\$HOME\e"#) == "a b$HOMEe")
        #expect(try expand(#"he'll'o "wo"rld"#) == "hello world")
        // Unquoted whitespace is kept by expand; words splits on it.
        #expect(try expand("a  $SPACED ") == "a  a  b ")
        let split = try WordExpander(escape: "\\").words(#"a "b c" 'd e' $SPACED "$SPACED" f\ g $EMPTY "" x"#) { Self.env[$0] }
        #expect(split == ["a", "b c", "d e", "a", "b", "a  b", "f g", "x"])
        #expect(failure { try expand("'open") }?.message.contains("matching single-quote") == true)
        #expect(failure { try expand("\"open") }?.message.contains("matching double-quote") == true)
    }

    @Test func errorsNameFileAndLine() throws {
        let missing = failure { try parse("FROM a\n\nRUN\n", file: "build/Containerfile") }
        #expect(missing?.code == .invalidFormat)
        #expect(missing?.message == "build/Containerfile:3: RUN requires at least one argument")
        let heredoc = failure { try parse("FROM a\nRUN <<EOF\necho hi\nEOF\n") }
        #expect(heredoc?.message == "Containerfile:2: heredocs are not supported")
        #expect(failure { try parse("FROM a\nCOPY <<-'EOF' /etc/x\nEOF") }?.message == "Containerfile:2: heredocs are not supported")
        // Not heredocs: quoted, exec form, other instructions.
        let notHeredocs = try parse("FROM a\nRUN echo \"<<EOF\"\nRUN [\"cat\", \"<<EOF\"]\nUSER <<x\nRUN cat <<<here")
        #expect(notHeredocs.instructions.count == 5)
        #expect(failure { try parse("") }?.message == "Containerfile:1: file with no instructions")
        #expect(failure { try parse("# only\n\n# comments\n") }?.message.hasSuffix("file with no instructions") == true)
    }

    @Test func bomAndCRLF() throws {
        let bytes: [UInt8] = [0xEF, 0xBB, 0xBF] + Array("# escape=`\r\nFROM a\r\nRUN x `\r\n  y\r\n".utf8)
        let cf = try Containerfile.parse(bytes, file: "win")
        #expect(cf.escape == "`")
        #expect(cf.instructions.map(\.arguments) == ["a", "x   y"])
        #expect(cf.instructions.map(\.line) == [2, 3])
    }

    @Test func onbuildTrigger() throws {
        let cf = try parse("FROM a\nONBUILD RUN --mount=type=cache,target=/c make \\\n    install\nONBUILD COPY [\"a\", \"/b\"]")
        let onbuild = cf.instructions[1]
        #expect(onbuild.keyword == "ONBUILD" && onbuild.flags.isEmpty && onbuild.json == nil)
        #expect(onbuild.arguments == "RUN --mount=type=cache,target=/c make     install")

        let trigger = try Containerfile.parseInstruction(onbuild.arguments, escape: cf.escape, file: "trigger", line: 7)
        #expect(trigger.keyword == "RUN" && trigger.line == 7)
        #expect(trigger.flags == [InstructionFlag(name: "mount", value: "type=cache,target=/c")])
        #expect(trigger.arguments == "make     install")
        let copy = try Containerfile.parseInstruction(cf.instructions[2].arguments, escape: "\\", file: "trigger", line: 8)
        #expect(copy.keyword == "COPY" && copy.json == ["a", "/b"])

        #expect(failure { try Containerfile.parseInstruction("run", escape: "\\", file: "trigger", line: 7) }?.message
            == "trigger:7: RUN requires at least one argument")
        #expect(failure { try Containerfile.parseInstruction("", escape: "\\", file: "trigger", line: 7) }?.code == .invalidFormat)
        #expect(failure { try Containerfile.parseInstruction("RUN a\nRUN b", escape: "\\", file: "trigger", line: 7) } != nil)
        // The trigger is checked along with the file.
        #expect(failure { try parse("FROM a\nONBUILD RUN <<EOF") }?.message == "Containerfile:2: heredocs are not supported")
    }
}
