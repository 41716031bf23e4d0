import StrataCore
import Testing
@testable import StrataEngine
@testable import StrataFormats

/// Value tests, no root: COPY wildcards match as Go's path.Match, .dockerignore files are read
/// and matched as moby/patternmatcher reads and matches them.
@Suite struct ContextPatternsTests {
    /// Go's src/path/match_test.go table: pattern, name, match, malformed pattern.
    static let goMatchTable: [(String, String, Bool, Bool)] = [
        ("abc", "abc", true, false),
        ("*", "abc", true, false),
        ("*c", "abc", true, false),
        ("a*", "a", true, false),
        ("a*", "abc", true, false),
        ("a*", "ab/c", false, false),
        ("a*/b", "abc/b", true, false),
        ("a*/b", "a/c/b", false, false),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", true, false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true, false),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false, false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false, false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true, false),
        ("a*b?c*x", "abxbbxdbxebxczzy", false, false),
        ("ab[c]", "abc", true, false),
        ("ab[b-d]", "abc", true, false),
        ("ab[e-g]", "abc", false, false),
        ("ab[^c]", "abc", false, false),
        ("ab[^b-d]", "abc", false, false),
        ("ab[^e-g]", "abc", true, false),
        ("a\\*b", "a*b", true, false),
        ("a\\*b", "ab", false, false),
        ("a?b", "a☺b", true, false),
        ("a[^a]b", "a☺b", true, false),
        ("a???b", "a☺b", false, false),
        ("a[^a][^a][^a]b", "a☺b", false, false),
        ("[a-ζ]*", "α", true, false),
        ("*[a-ζ]", "A", false, false),
        ("a?b", "a/b", false, false),
        ("a*b", "a/b", false, false),
        ("[\\]a]", "]", true, false),
        ("[\\-]", "-", true, false),
        ("[x\\-]", "x", true, false),
        ("[x\\-]", "-", true, false),
        ("[x\\-]", "z", false, false),
        ("[\\-x]", "x", true, false),
        ("[\\-x]", "-", true, false),
        ("[\\-x]", "a", false, false),
        ("[]a]", "]", false, true),
        ("[-]", "-", false, true),
        ("[x-]", "x", false, true),
        ("[x-]", "-", false, true),
        ("[x-]", "z", false, true),
        ("[-x]", "x", false, true),
        ("[-x]", "-", false, true),
        ("[-x]", "a", false, true),
        ("\\", "a", false, true),
        ("[a-b-c]", "a", false, true),
        ("[", "a", false, true),
        ("[^", "a", false, true),
        ("[^bc", "a", false, true),
        ("a[", "a", false, true),
        ("a[", "ab", false, true),
        ("a[", "x", false, true),
        ("a/b[", "x", false, true),
        ("*x", "xxx", true, false),
    ]

    @Test func goMatchTableCases() throws {
        for (pattern, name, match, bad) in Self.goMatchTable {
            if bad {
                #expect(throws: (any Error).self) { try GlobMatch.match(pattern, name) }
            } else {
                #expect(try GlobMatch.match(pattern, name) == match, "\(pattern) \(name)")
            }
        }
    }

    @Test func globMatchMore() throws {
        // `!` does not negate a class in Go; `^` does, and a class may match a `/`.
        #expect(try GlobMatch.match("[!a]", "!"))
        #expect(try !GlobMatch.match("[!a]", "b"))
        #expect(try GlobMatch.match("a[^x]b", "a/b"))
        #expect(try GlobMatch.match("*.txt", ".txt"))
        #expect(try !GlobMatch.match("*.txt", "dir/a.txt"))
        #expect(try GlobMatch.match("", ""))
        #expect(try !GlobMatch.match("", "a"))
        #expect(try GlobMatch.match("\\[x\\]", "[x]"))
        #expect(try GlobMatch.match("[*?]", "?"))
        // A reversed range is not malformed for Go, it matches nothing.
        #expect(try !GlobMatch.match("[z-a]", "m"))
        // Malformed after a mismatch is still reported.
        #expect(throws: (any Error).self) { try GlobMatch.match("x*[", "abc") }
    }

    @Test func hasMeta() {
        #expect(GlobMatch.hasMeta("*.go"))
        #expect(GlobMatch.hasMeta("src/?/x"))
        #expect(GlobMatch.hasMeta("[ab]"))
        #expect(!GlobMatch.hasMeta("plain/file.txt"))
        #expect(!GlobMatch.hasMeta("a\\*b"))
        #expect(GlobMatch.hasMeta("a\\\\*b"))
        #expect(!GlobMatch.hasMeta(""))
    }

    @Test func readsIgnoreFileAsDockerDoes() throws {
        // moby/patternmatcher ignorefile_test.go.
        let content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! "
        #expect(IgnorePatterns.readAll(content).map(\.text) ==
            ["test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path", "!", "!"])
        // A lone `!` is refused when the patterns are compiled.
        #expect(throws: (any Error).self) { try IgnorePatterns(text: content) }
        let ok = try IgnorePatterns(text: "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n")
        #expect(ok.lines == ["test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path"])
        #expect(!ok.isEmpty)
    }

    @Test func commentsWhitespaceAndCleaning() throws {
        // Only a `#` in the first column starts a comment; BOM and CRLF are dropped.
        let p = try IgnorePatterns(text: "\u{FEFF}# comment\r\n  #notcomment  \r\n\t\r\n./a/./b/../c/\r\n/x//y\n!/z/\n/\n.\nfoo/..\n../up")
        #expect(p.lines == ["#notcomment", "a/c", "x/y", "!z", "/", ".", ".", "../up"])
        #expect(p.excludes("#notcomment"))
        #expect(!p.excludes("# comment"))
        #expect(p.excludes("a/c"))
        #expect(p.excludes("a/c/d"))
        #expect(!p.excludes("a/b"))
        #expect(p.excludes("x/y"))
        // `/` and `.` name the context root, which is never excluded: they exclude nothing.
        #expect(!p.excludes("anything"))
        #expect(!p.excludes("."))
        #expect(!IgnorePatterns().excludes("a"))
        #expect(IgnorePatterns().isEmpty)
        #expect(try IgnorePatterns(text: "# only\n\n  \n").isEmpty)
    }

    @Test func leadingSlashIsContextRelative() throws {
        let p = try IgnorePatterns(text: "/secret.txt\n/build/*.o\n")
        #expect(p.excludes("secret.txt"))
        #expect(!p.excludes("sub/secret.txt"))
        #expect(p.excludes("build/a.o"))
        #expect(!p.excludes("src/build/a.o"))
        // The path's own leading slash does not matter either.
        #expect(p.excludes("/secret.txt"))
    }

    /// moby/patternmatcher TestMatches (single patterns, MatchesOrParentMatches).
    static let patternMatcherTable: [(String, String, Bool)] = [
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true),
        ("**/", "file/", true),
        ("**", "dir/file", true),
        ("**/", "dir/file", true),
        ("**", "dir/file/", true),
        ("**/", "dir/file/", true),
        ("**/**", "dir/file", true),
        ("**/**", "dir/file/", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/file/", true),
        ("dir/**", "dir/dir2/file", true),
        ("dir/**", "dir/dir2/file/", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/file/", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file/", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/file", true),
        ("**file", "dir/dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("a\\\\", "a\\", true),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true),
        ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true),
        ("a\\*b", "a*b", true),
    ]

    @Test func patternMatcherTableCases() throws {
        for (pattern, path, expected) in Self.patternMatcherTable {
            let p = try IgnorePatterns(text: pattern)
            #expect(p.excludes(path) == expected, "\(pattern) \(path)")
        }
    }

    /// moby/patternmatcher TestMatch: Go's table through Matches, so parents count ("a*" excludes
    /// "ab/c"), and malformed patterns are refused.
    @Test func goTableThroughIgnoreFile() throws {
        for (pattern, name, match, bad) in Self.goMatchTable {
            if bad {
                #expect(throws: (any Error).self) { try IgnorePatterns(text: pattern) }
                continue
            }
            let expected = pattern == "a*" && name == "ab/c" ? true : match
            #expect(try IgnorePatterns(text: pattern).excludes(name) == expected, "\(pattern) \(name)")
        }
    }

    @Test func doubleStarForms() throws {
        let any = try IgnorePatterns(text: "**/*.log")
        #expect(any.excludes("a.log"))
        #expect(any.excludes("x/y/z.log"))
        #expect(!any.excludes("x/y/z.txt"))
        let under = try IgnorePatterns(text: "docs/**")
        #expect(under.excludes("docs/a"))
        #expect(under.excludes("docs/a/b/c"))
        #expect(!under.excludes("docs"))
        #expect(!under.excludes("docsx"))
        let middle = try IgnorePatterns(text: "src/**/test")
        #expect(middle.excludes("src/test"))
        #expect(middle.excludes("src/a/b/test"))
        #expect(middle.excludes("src/a/test/x.go"))
        #expect(!middle.excludes("src/atest"))
        let all = try IgnorePatterns(text: "**")
        #expect(all.excludes("a"))
        #expect(all.excludes("a/b/c"))
        // As in patternmatcher's regular expressions: `**` not followed by `/` still ends at one.
        let glued = try IgnorePatterns(text: "a**b")
        #expect(glued.excludes("a/b"))
        #expect(glued.excludes("a/x/y/b"))
        #expect(!glued.excludes("axb"))
        // A leading `**` without `/` is a plain suffix.
        #expect(try IgnorePatterns(text: "**foo").excludes("a/xfoo"))
        #expect(try IgnorePatterns(text: "**/foo").excludes("a/foo"))
        #expect(try !IgnorePatterns(text: "**/foo").excludes("a/xfoo"))
    }

    @Test func parentsMatch() throws {
        let p = try IgnorePatterns(text: "foo\nbar/*\n*.tmp\n")
        #expect(p.excludes("foo"))
        #expect(p.excludes("foo/bar/baz"))
        #expect(!p.excludes("x/foo"))
        #expect(p.excludes("bar/a"))
        #expect(p.excludes("bar/a/b/c"))
        #expect(!p.excludes("bar"))
        #expect(p.excludes("cache.tmp/inner/file"))
        #expect(!p.excludes("dir/cache.tmp"))
        // `*` stays in one component.
        #expect(try !IgnorePatterns(text: "a*/c").excludes("ab/x/c"))
        #expect(try IgnorePatterns(text: "a*").excludes("ab/c"))
    }

    @Test func exceptionsAndOrder() throws {
        let docs = try IgnorePatterns(text: "docs\n!docs/README.md\n")
        #expect(!docs.excludes("docs/README.md"))
        #expect(docs.excludes("docs/other.md"))
        #expect(docs.excludes("docs"))
        let slash = try IgnorePatterns(text: "docs/\n!docs/README.md\n")
        #expect(!slash.excludes("docs/README.md"))
        let wildcard = try IgnorePatterns(text: "docs/*\n!docs/README.md\n")
        #expect(!wildcard.excludes("docs/README.md"))
        #expect(wildcard.excludes("docs/x"))
        // The last matching line decides.
        #expect(try IgnorePatterns(text: "!fileutils.go\n*.go").excludes("fileutils.go"))
        #expect(try !IgnorePatterns(text: "*.go\n!fileutils.go").excludes("fileutils.go"))
        #expect(try IgnorePatterns(text: "*.md\n!README*.md\nREADME-secret.md").excludes("README-secret.md"))
        #expect(try !IgnorePatterns(text: "*.md\n!README*.md\nREADME-secret.md").excludes("README-public.md"))
        // patternmatcher's multi-pattern table.
        #expect(try !IgnorePatterns(text: "**\n!util/docker/web").excludes("util/docker/web/foo"))
        #expect(try IgnorePatterns(text: "**\n!util/docker/web\nutil/docker/web/foo").excludes("util/docker/web/foo"))
        #expect(try !IgnorePatterns(text: "**\n!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl")
            .excludes("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"))
        #expect(try !IgnorePatterns(text: "**\n!dist/*.whl").excludes("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"))
        // An exception alone excludes nothing; a parent exception covers the files below.
        #expect(try !IgnorePatterns(text: "!a").excludes("a"))
        let keep = try IgnorePatterns(text: "*\n!src\n")
        #expect(!keep.excludes("src/main.swift"))
        #expect(keep.excludes("README"))
    }

    @Test func classesEscapesAndUnicode() throws {
        let p = try IgnorePatterns(text: "[a-c]*.txt\nlog[0-9]\nx\\*y\nré?umé\n")
        #expect(p.excludes("apple.txt"))
        #expect(!p.excludes("dog.txt"))
        #expect(p.excludes("log7"))
        #expect(!p.excludes("logx"))
        #expect(p.excludes("x*y"))
        #expect(!p.excludes("xzy"))
        #expect(p.excludes("résumé"))
        #expect(try IgnorePatterns(text: "[^a]*").excludes("b/c"))
        // Regular-expression characters are literal.
        #expect(try IgnorePatterns(text: "a+b(c)*").excludes("a+b(c)d"))
        #expect(try !IgnorePatterns(text: "a+b(c)*").excludes("aab(c)d"))
        // An escaped `!` starts a pattern, not an exception.
        #expect(try IgnorePatterns(text: "\\!important").excludes("!important"))
    }

    /// What patternmatcher's expressions do beyond path.Match, as Docker does it.
    @Test func expressionQuirksAsInDocker() throws {
        // `{`, `|` and `}` are not escaped: `{n}` repeats, `|` alternates (and MatchString
        // searches, so `^a*|x$` is "starts with a, no slash" or "ends with x").
        let braces = try IgnorePatterns(text: "x*a{2}")
        #expect(braces.excludes("xyaa"))
        #expect(!braces.excludes("xya"))
        #expect(!braces.excludes("xya{2}"))
        let bar = try IgnorePatterns(text: "a*|x")
        #expect(bar.excludes("abc"))
        #expect(bar.excludes("q/r/x"))
        #expect(!bar.excludes("q/r/y"))
        #expect(try IgnorePatterns(text: "*|x").excludes("any/thing"))
        // Without a wildcard the same characters compare literally.
        #expect(try IgnorePatterns(text: "a|b{2}").excludes("a|b{2}"))
        #expect(try !IgnorePatterns(text: "a|b{2}").excludes("a"))
        // `^` outside a class is an anchor: never true after the first character.
        #expect(try !IgnorePatterns(text: "a^b*").excludes("a^bc"))
        #expect(try IgnorePatterns(text: "a^b").excludes("a^b"))
        // `.` in `(.*/)?` does not cross a newline.
        #expect(try IgnorePatterns(text: "a/**/x").excludes("a/b/c/x"))
        #expect(try !IgnorePatterns(text: "a/**/x").excludes("a/b\nc/x"))
        // POSIX and Perl classes of Go's syntax.
        #expect(try IgnorePatterns(text: "[[:digit:]]*").excludes("7up"))
        #expect(try !IgnorePatterns(text: "[[:digit:]]*").excludes("up"))
        #expect(try IgnorePatterns(text: "v\\d*").excludes("v1.2"))
        #expect(try !IgnorePatterns(text: "v\\d*").excludes("vd"))
        // patternmatcher checks a pattern with filepath.Match, which stops at the first mismatch
        // with ".": `x*[]a]` passes there and compiles (`]` first in a class is literal); Go's
        // path.Match, which COPY wildcards follow, calls it malformed.
        let late = try IgnorePatterns(text: "x*[]a]")
        #expect(late.excludes("xy]"))
        #expect(late.excludes("xya"))
        #expect(!late.excludes("xyb"))
        #expect(throws: (any Error).self) { try GlobMatch.match("x*[]a]", "abc") }
    }

    @Test func malformedPatternsAreRefused() throws {
        #expect(throws: (any Error).self) { try IgnorePatterns(text: "ok\n[\n") }
        #expect(throws: (any Error).self) { try IgnorePatterns(text: "a\\") }
        #expect(throws: (any Error).self) { try IgnorePatterns(text: "!") }
        #expect(throws: (any Error).self) { try IgnorePatterns(text: "!/") }
        // Fine for path.Match, but Go cannot compile the reversed range (moby/moby#52203).
        #expect(throws: (any Error).self) { try IgnorePatterns(text: "[Local-Only]/") }
        #expect(throws: (any Error).self) { try IgnorePatterns(text: "x[z-a]*") }
        // Go's expression syntax refuses these too.
        #expect(throws: (any Error).self) { try IgnorePatterns(text: "x*[[:bogus:]]") }
        #expect(throws: (any Error).self) { try IgnorePatterns(text: "*\\q") }
        #expect(throws: (any Error).self) { try IgnorePatterns(text: "a*{2}") }
        #expect(throws: (any Error).self) { try IgnorePatterns(text: "x?{3,1}") }
        // The error says which line.
        do {
            _ = try IgnorePatterns(text: "ok\n# c\n[")
            #expect(Bool(false))
        } catch let e as StrataError {
            #expect(e.code == .invalidFormat && e.message.hasPrefix("line 3:"))
        }
    }

    @Test func mayIncludeBelow() throws {
        let keep = try IgnorePatterns(text: "node_modules\n!node_modules/keep/me.js\n")
        #expect(keep.excludes("node_modules"))
        #expect(keep.mayIncludeBelow("node_modules"))
        #expect(keep.mayIncludeBelow("node_modules/keep"))
        #expect(!keep.mayIncludeBelow("node_modules/other"))
        let go = try IgnorePatterns(text: "*\n!src/**/*.go\n")
        #expect(go.mayIncludeBelow("src"))
        #expect(go.mayIncludeBelow("src/a/b"))
        #expect(!go.mayIncludeBelow("docs"))
        #expect(try IgnorePatterns(text: "build\n!**/keep.txt").mayIncludeBelow("build"))
        #expect(try IgnorePatterns(text: "build\n!build/**").mayIncludeBelow("build"))
        #expect(try !IgnorePatterns(text: "build\n!buildx/**").mayIncludeBelow("build"))
        // An exception before the excluding line changes nothing below it.
        #expect(try !IgnorePatterns(text: "!build/keep\nbuild").mayIncludeBelow("build"))
        #expect(try !IgnorePatterns(text: "build\n!build/keep\nbuild").mayIncludeBelow("build"))
        #expect(try !IgnorePatterns(text: "a/b\n!a/c").mayIncludeBelow("a/b"))
        #expect(try !IgnorePatterns(text: "tmp\ncache").mayIncludeBelow("tmp"))
        // Wildcards in the exception.
        let wild = try IgnorePatterns(text: "*\n!a*b/c\n")
        #expect(wild.mayIncludeBelow("axb"))
        #expect(!wild.mayIncludeBelow("x"))
        #expect(try IgnorePatterns(text: "out\n!out/*/keep").mayIncludeBelow("out"))
        #expect(try !IgnorePatterns(text: "out\n!out/*/keep").mayIncludeBelow("out/a/b"))
        // A directory that is not excluded is walked anyway.
        #expect(try IgnorePatterns(text: "x").mayIncludeBelow("y"))
        #expect(IgnorePatterns().mayIncludeBelow("y"))
        // What mayIncludeBelow promises: when it says no, nothing below is included.
        let mixed = try IgnorePatterns(text: "*\n!a*b/c\n!out/*/keep\n!**/*.go\nvendor\n")
        for dir in ["axb", "x", "out", "out/q", "vendor", "vendor/v"] where mixed.excludes(dir) && !mixed.mayIncludeBelow(dir) {
            for leaf in ["c", "keep", "x.go", "q/keep", "q/c", "z/x.go"] {
                #expect(mixed.excludes(dir + "/" + leaf), "\(dir)/\(leaf)")
            }
        }
    }
}
